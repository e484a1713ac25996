"""farmseg: farm field segmentation from aerial and satellite GeoTIFFs."""

__version__ = "0.1.0"

import os as _os

# GDAL's block cache defaults to 5 % of RAM and fills up on large rasters; farmseg reads and
# writes by windows, so a small cache keeps memory flat (override: GDAL_CACHEMAX in MB).
_os.environ.setdefault("GDAL_CACHEMAX", "128")
