"""The ONNX Runtime inference engine (CPU; needs no torch)."""

from __future__ import annotations

import numpy as np

from farmseg.errors import ModelError
from farmseg.jobs import cpu_threads
from farmseg.models.bundle import ModelBundle


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits (N, K, H, W), in place."""
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


class OnnxPredictor:
    """ONNX Runtime on the CPU (the only `device`), threads set to the available cores;
    precision fp32 runs model.onnx, int8 the bundle's quantized model."""

    def __init__(self, bundle: ModelBundle, device: str = "cpu", precision: str = "fp32") -> None:
        if not bundle.has_onnx:
            raise ModelError(bundle.path, "has no model.onnx; run `farmseg export-onnx` on it "
                             "or use --engine torch")
        int8 = precision == "int8"
        if int8 and not bundle.int8_path.is_file():
            raise ModelError(bundle.path, "has no int8 model; make one with `farmseg quantize`")
        import onnxruntime as ort

        path = bundle.int8_path if int8 else bundle.onnx_path
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(path, f"cannot load ONNX model ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.name = "onnx/cpu/int8" if int8 else "onnx/cpu/fp32"

    def suggested_batch(self, tile: int) -> int:
        """On 2-4 cores larger batches are no faster (measured) but cost memory."""
        return 2 if tile <= 512 else 1

    def predict(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})[0]
        return softmax(logits.astype(np.float32, copy=False))
