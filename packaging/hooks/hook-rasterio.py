# rasterio has no hook in pyinstaller-hooks-contrib: its Cython modules import each other
# at run time, and the wheel carries GDAL's and PROJ's data (gdal_data/, proj_data/),
# which rasterio finds next to its own modules.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

hiddenimports = collect_submodules(
    "rasterio", filter=lambda name: not name.startswith(("rasterio.rio", "rasterio.plot")))
datas = collect_data_files("rasterio", subdir="gdal_data") + \
    collect_data_files("rasterio", subdir="proj_data")
