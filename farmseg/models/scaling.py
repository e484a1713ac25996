"""Turn raw band values into network input, as the model bundle describes."""

from __future__ import annotations

from typing import Any

import numpy as np


def fixed_scaling(low: list[float], high: list[float], method: str = "fixed") -> dict[str, Any]:
    return {"method": method, "low": [float(v) for v in low], "high": [float(v) for v in high]}


def percentile_scaling(samples: np.ndarray, valid: np.ndarray,
                       low_pct: float = 2.0, high_pct: float = 98.0) -> dict[str, Any]:
    """Per-band percentile stretch from sample pixels (bands, n) where `valid` (n,) is True."""
    lows, highs = [], []
    for band in samples:
        values = band[valid & np.isfinite(band)]
        if values.size == 0:
            lows.append(0.0)
            highs.append(1.0)
            continue
        lo, hi = np.percentile(values, [low_pct, high_pct])
        if hi <= lo:
            hi = lo + 1.0
        lows.append(float(lo))
        highs.append(float(hi))
    return {"method": "percentile", "low": lows, "high": highs,
            "percentiles": [low_pct, high_pct]}


def stretch_to_reference(samples: np.ndarray, valid: np.ndarray,
                         reference: dict[str, list[float]] | None,
                         low_pct: float = 2.0, high_pct: float = 98.0) -> dict[str, Any]:
    """Scaling that maps this data's 2/98 % percentiles onto the training data's.

    `reference` holds the training data's percentiles after its own scaling (0..1); without
    it the percentiles map onto 0 and 1.
    """
    measured = percentile_scaling(samples, valid, low_pct, high_pct)
    n = len(measured["low"])
    ref_low = (reference or {}).get("low", [0.0] * n)
    ref_high = (reference or {}).get("high", [1.0] * n)
    lows, highs = [], []
    for lo, hi, r_lo, r_hi in zip(measured["low"], measured["high"], ref_low, ref_high):
        span = (hi - lo) / max(r_hi - r_lo, 1e-6)
        lows.append(lo - r_lo * span)
        highs.append(lows[-1] + span)
    return {"method": "matched-percentile", "low": lows, "high": highs,
            "percentiles": [low_pct, high_pct]}


def reference_percentiles(samples: np.ndarray, valid: np.ndarray, scaling: dict[str, Any],
                          low_pct: float = 2.0, high_pct: float = 98.0) -> dict[str, list[float]]:
    """2/98 % percentiles of training pixels (bands, n) after `scaling` (0..1 units)."""
    low = np.asarray(scaling["low"], np.float64)[:, None]
    high = np.asarray(scaling["high"], np.float64)[:, None]
    scaled = np.clip((samples - low) / (high - low), 0, 1)
    measured = percentile_scaling(scaled, valid, low_pct, high_pct)
    return {"low": measured["low"], "high": measured["high"]}


def apply_scaling(data: np.ndarray, scaling: dict[str, Any],
                  mean: list[float], std: list[float]) -> np.ndarray:
    """(bands, h, w) raw values -> float32 network input (stretched to 0..1, then normalized)."""
    low = np.asarray(scaling["low"], dtype=np.float32)[:, None, None]
    high = np.asarray(scaling["high"], dtype=np.float32)[:, None, None]
    out = (data.astype(np.float32) - low) / (high - low)
    np.clip(out, 0.0, 1.0, out=out)
    out -= np.asarray(mean, dtype=np.float32)[:, None, None]
    out /= np.asarray(std, dtype=np.float32)[:, None, None]
    np.nan_to_num(out, copy=False)
    return out
