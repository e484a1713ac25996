#!/usr/bin/env bash
# `make package`: freeze farmseg into dist/farmseg/ (one folder, PyInstaller), collect the
# licences, pack dist/farmseg-<version>-linux-x86_64.tar.gz and smoke-test the archive.
#
# Uses its own build environment, build/pkg-venv (made from $PYTHON, default python3 3.11,
# with the pinned packages of packaging/requirements.txt from PyPI: the runtime
# dependencies without torch, PySide6-Essentials, PyInstaller); never the dev .venv.
# SKIP_SMOKE=1 skips the smoke test.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=build/pkg-venv
STAMP=$VENV/.installed
WORK=build/pkg
START=$(date +%s)

log() { echo "package: $*"; }

# 1. the build environment (re-made when requirements.txt changes)
if [ ! -f "$STAMP" ] || [ packaging/requirements.txt -nt "$STAMP" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 10))' \
        || { echo "package: $PYTHON is older than 3.10" >&2; exit 1; }
    log "build environment $VENV ($("$PYTHON" --version))"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r packaging/requirements.txt
    touch "$STAMP"
fi
# Qt's xcb platform plugin needs these X libraries; PyInstaller bundles them from this
# machine when they are installed here (users' desktops may lack libxcb-cursor0).
for lib in libxcb-cursor.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1; do
    ldconfig -p 2>/dev/null | grep -q "$lib" || echo "package: warning: $lib is not installed" \
        "here, so the package will not carry it (Debian: apt-get install libxcb-cursor0" \
        "libxcb-icccm4 libxcb-keysyms1)" >&2
done
PY="$VENV/bin/python"
VENV_READY=$(date +%s)
if "$PY" -c 'import torch' 2>/dev/null; then
    echo "package: torch is installed in $VENV; the CPU package must not carry it" >&2; exit 1
fi
VERSION=$(cd "$ROOT" && "$PY" -c 'import farmseg; print(farmseg.__version__)')
NAME="farmseg-$VERSION-linux-x86_64"
log "farmseg $VERSION"

# 2. freeze
rm -rf dist/farmseg "dist/$NAME.tar.gz"
mkdir -p "$WORK" dist
FARMSEG_PKG_WORK="$ROOT/$WORK" "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath dist --workpath "$WORK/pyinstaller" packaging/farmseg.spec
FROZEN=$(date +%s)

# CPython's own libraries keep their debug symbols when built from source (pyenv): drop
# them (about 25 MB); the wheels' libraries are left as they are.
if command -v strip >/dev/null; then
    find dist/farmseg/_internal -maxdepth 1 -name 'libpython3*.so*' -type f \
        -exec strip --strip-debug {} +
    find dist/farmseg/_internal/python3.* -path '*lib-dynload/*.so' -type f \
        -exec strip --strip-debug {} + 2>/dev/null || true
fi

# 3. the files beside the executable
cp packaging/install.sh dist/farmseg/install.sh
chmod 755 dist/farmseg/install.sh
sed "s/@VERSION@/$VERSION/" packaging/README-package.txt > dist/farmseg/README.txt
"$PY" packaging/collect_licenses.py --app dist/farmseg --modules "$WORK/bundled-modules.txt"

# 4. the archive
tar -C dist -czf "dist/$NAME.tar.gz" farmseg
END=$(date +%s)
ARCHIVE_MB=$(du -m "dist/$NAME.tar.gz" | cut -f1)
FOLDER_MB=$(du -sm dist/farmseg | cut -f1)
log "built dist/farmseg/ ($FOLDER_MB MB) and dist/$NAME.tar.gz ($ARCHIVE_MB MB)"
log "build time $((END - START)) s (build environment $((VENV_READY - START)) s, PyInstaller $((FROZEN - VENV_READY)) s)"
if [ "$ARCHIVE_MB" -ge 500 ]; then
    echo "package: the archive is $ARCHIVE_MB MB, over the 500 MB limit" >&2; exit 1
fi

# 5. smoke test of the archive
if [ -z "${SKIP_SMOKE:-}" ]; then
    packaging/smoke_test.sh "dist/$NAME.tar.gz" "$VERSION"
fi
log "build time $((END - START)) s, archive $ARCHIVE_MB MB (unpacked $FOLDER_MB MB): dist/$NAME.tar.gz"
