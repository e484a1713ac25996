"""The streamed pipeline: tile layout and blending, windowed inference, the segment job."""
