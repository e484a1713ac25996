"""Raster and vector I/O: windowed raster reading, vector files, all-or-nothing outputs."""
