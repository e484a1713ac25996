"""Which engine runs a model: one pure decision over the request, the machine and the bundle.

No I/O here: the machine's features and the bundle's accuracy verdicts come in as values
(see machine.py and engines.py), so every case can be tested on any computer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from farmseg.errors import UsageError

ENGINES = ("auto", "torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "int8", "bf16", "fp16")

# Where bf16 is native, torch's frozen bf16 graph beats ONNX Runtime fp32 at steady state
# (Xeon with AMX, 512 px tiles, 2 threads: 8.6 vs 2.9 MPix/s), but importing torch and
# tracing the graph costs seconds, so only rasters of this many pixels or more gain.
BF16_TORCH_MIN_PIXELS = 32_000_000


@dataclass(frozen=True)
class EngineRequest:
    """What the user asked for; each is "auto" or one of ENGINES, DEVICES, PRECISIONS."""

    engine: str = "auto"
    device: str = "auto"
    precision: str = "auto"


@dataclass(frozen=True)
class EngineChoice:
    """The engine that runs: onnx on cpu (fp32 | int8) or torch on cpu | cuda (fp32 | bf16 |
    fp16)."""

    engine: str
    device: str
    precision: str


class Machine(Protocol):
    """What this computer offers (read only when the decision needs it)."""

    @property
    def native_bf16(self) -> bool: ...  # bf16 matrix maths in hardware
    @property
    def fast_int8(self) -> bool: ...  # ONNX Runtime's int8 kernels beat fp32
    @property
    def cuda(self) -> bool: ...  # a CUDA GPU usable by torch
    @property
    def onnxruntime(self) -> bool: ...  # onnxruntime imports
    @property
    def torch(self) -> bool: ...  # torch is installed


@dataclass(frozen=True)
class BundleVerdicts:
    """What the model bundle holds and which reduced precisions passed its accuracy check."""

    has_onnx: bool
    int8_accepted: bool  # an int8 model exists and kept field F1 within tolerance
    bf16_accepted: bool


def bf16_is_fast_and_accepted(machine: Machine, verdicts: BundleVerdicts) -> bool:
    """The CPU has native bf16 (AVX-512 BF16 / AMX; emulated bf16 is many times slower)
    and the bundle's bf16 check passed."""
    return verdicts.bf16_accepted and machine.native_bf16


def bf16_torch_is_fastest(machine: Machine, verdicts: BundleVerdicts, pixels: int | None) -> bool:
    """torch bf16 for rasters of BF16_TORCH_MIN_PIXELS or more. An accepted int8 model is
    preferred: ONNX Runtime int8 (4.0 MPix/s on the Xeon above) has no start-up cost, uses
    ~0.6 GB less memory and lost less F1 on the default model."""
    return ((pixels is None or pixels >= BF16_TORCH_MIN_PIXELS)
            and bf16_is_fast_and_accepted(machine, verdicts) and not verdicts.int8_accepted
            and machine.torch)


def check_request(request: EngineRequest) -> None:
    """Known values that go together, else UsageError."""
    for value, allowed, what in ((request.engine, ENGINES, "engine"),
                                 (request.device, DEVICES, "device"),
                                 (request.precision, PRECISIONS, "precision")):
        if value not in allowed:
            raise UsageError(None, f"unknown {what} '{value}' (choose from {', '.join(allowed)})")
    if request.precision == "int8" and request.engine == "torch":
        raise UsageError(None, "--precision int8 runs on ONNX Runtime; use --engine onnx")
    if request.precision in ("bf16", "fp16") and request.engine == "onnx":
        raise UsageError(None, f"--precision {request.precision} runs on torch; "
                         "use --engine torch")
    if request.engine == "onnx" and request.device == "cuda":
        raise UsageError(None, "--engine onnx runs on the CPU; use --engine torch for CUDA")


def _auto_engine(request: EngineRequest, machine: Machine, verdicts: BundleVerdicts,
                 pixels: int | None) -> str:
    """torch on CUDA or for bf16/fp16; torch bf16 where it is fastest; else ONNX Runtime
    when the bundle has a model.onnx and onnxruntime is installed."""
    wants_cuda = request.device == "cuda" or (request.device == "auto" and machine.cuda)
    if request.precision in ("bf16", "fp16") or (
            not wants_cuda and request.precision == "auto"
            and bf16_torch_is_fastest(machine, verdicts, pixels)):
        return "torch"
    if not wants_cuda and verdicts.has_onnx and machine.onnxruntime:
        return "onnx"
    return "torch"


def choose_engine(request: EngineRequest, machine: Machine, verdicts: BundleVerdicts,
                  pixels: int | None = None) -> EngineChoice:
    """The engine, device and precision that run a model on `pixels` (the area to segment).

    precision auto: int8 ONNX where the bundle's int8 model passed its accuracy check and
    the CPU has fast int8; bf16 for torch on CPUs with native bf16 when the bundle's bf16
    check passed; else fp32 (also for int8 asked of an auto engine that lands on torch).
    """
    check_request(request)
    engine = request.engine
    if engine == "auto":
        engine = _auto_engine(request, machine, verdicts, pixels)
    if engine == "onnx":
        int8 = request.precision == "int8" or (request.precision == "auto"
                                               and verdicts.int8_accepted
                                               and machine.fast_int8)
        return EngineChoice("onnx", "cpu", "int8" if int8 else "fp32")
    device = request.device
    if device == "auto":
        device = "cuda" if machine.cuda else "cpu"
    precision = request.precision
    if precision == "auto" and device == "cpu" and bf16_is_fast_and_accepted(machine, verdicts):
        precision = "bf16"
    elif precision not in ("bf16", "fp16"):
        precision = "fp32"
    return EngineChoice("torch", device, precision)
