# pyogrio has no hook in pyinstaller-hooks-contrib: it carries its own GDAL build with
# gdal_data/ and proj_data/, found next to its modules; its tests are left out.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

hiddenimports = collect_submodules(
    "pyogrio", filter=lambda name: not name.startswith(("pyogrio.tests", "pyogrio.geopandas")))
datas = collect_data_files("pyogrio", subdir="gdal_data") + \
    collect_data_files("pyogrio", subdir="proj_data")
