# Runtime hook of the frozen farmseg: the bundled GDAL and PROJ builds (rasterio's, pyogrio's,
# pyproj's) must read the data files they were built with, which they find beside their own
# modules. A GDAL_DATA / PROJ_DATA / PROJ_LIB left in the environment by a system GDAL
# install would point them at another version's files (e.g. an older proj.db, refused), so
# the frozen app ignores those variables unless they point inside the bundle.
# FARMSEG_KEEP_GEO_ENV=1 keeps them.
import os
import sys

if not os.environ.get("FARMSEG_KEEP_GEO_ENV"):
    _bundle = getattr(sys, "_MEIPASS", "")
    for _name in ("GDAL_DATA", "PROJ_DATA", "PROJ_LIB", "GDAL_DRIVER_PATH"):
        _value = os.environ.get(_name)
        if _value is not None and not (_bundle and _value.startswith(_bundle)):
            del os.environ[_name]
