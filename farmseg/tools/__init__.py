"""Tools on top of the core: benchmark, raster info, reduced-precision checks, fine-tune check."""
