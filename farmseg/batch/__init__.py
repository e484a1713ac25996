"""Many scenes, one seamless field layer: block-wise segmentation on a Dask cluster.

scenes (find the rasters) -> mosaic (one virtual raster per grid) -> plan (blocks with a
halo aligned to the tile layout) -> blocks (per block: probabilities and seeds, then fields
grown across block edges) on a cluster (cluster, run; results kept in a job folder, jobdir)
-> merge (fields linked across block and scene edges, one coverage) -> clean and export.
"""
