"""Fields from probabilities: instances, exact polygons, cleaning, measurements, export."""
