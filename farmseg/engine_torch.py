"""The PyTorch inference engine (imports torch)."""

from __future__ import annotations

import numpy as np
import torch

from farmseg.bundle import ModelBundle
from farmseg.engines import cpu_threads
from farmseg.errors import UsageError
from farmseg.nets import network_from_bundle


class TorchPredictor:
    """A bundle's network on CPU (channels_last) or CUDA."""

    def __init__(self, bundle: ModelBundle, device: str = "auto") -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise UsageError(None, "--device cuda: no CUDA GPU is available")
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads())
        self.model = network_from_bundle(bundle.meta, bundle.weights_path).to(self.device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.name = f"torch/{self.device.type}"
        if self.device.type == "cuda":
            self.name += f" ({torch.cuda.get_device_name(self.device)})"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            x = x.contiguous(memory_format=torch.channels_last)
            probs = torch.softmax(self.model(x), dim=1)
            return probs.float().cpu().numpy()
