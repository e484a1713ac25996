"""farmseg: farm field segmentation from aerial and satellite GeoTIFFs."""

__version__ = "0.1.0"
