"""Models and engines: bundles, networks, input scaling, predictors, ONNX export."""
