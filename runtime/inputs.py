"""Validation of model inputs before they reach onnxruntime.

onnxruntime's own errors on bad input are cryptic or, for NaN, absent: every
check here names what was given and what is expected.
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import InputError


def is_whole(value) -> bool:
    """An integer count or rate (numpy integers too), not a bool, which Python counts as one."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_array(value, name: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__array__") or isinstance(value, (list, tuple)):
        try:
            return np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{name} cannot be read as an array: {exc}") from exc
    raise InputError(f"{name} must be a numpy array, got {type(value).__name__}")


def check_features(features, feature_dim: int) -> np.ndarray:
    """-> C-contiguous float32 (B, T, feature_dim)."""
    x = _as_array(features, "input_features")
    if x.ndim != 3:
        hint = " (add a batch axis: x[None])" if x.ndim == 2 else ""
        raise InputError(f"input_features must have rank 3 [batch, frames, {feature_dim}], "
                         f"got shape {x.shape}{hint}")
    if x.dtype.kind != "f":
        raise InputError(f"input_features must be floating point (float32 expected), got {x.dtype}; "
                         "integer audio must go through the FeatureExtractor first")
    if x.shape[2] != feature_dim:
        raise InputError(f"input_features last axis must be {feature_dim} (80 mel bins x stride 2), "
                         f"got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"input_features is empty: shape {x.shape}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf: reported just below
        x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"input_features holds {int(bad.sum())} NaN/Inf values (first at {first}); "
                         "the model would return garbage")
    return x


def check_mask(mask, batch: int, frames: int, min_frames: int) -> np.ndarray:
    """-> int64 (B, T) right-padded 0/1 mask; None means every frame is real."""
    if mask is None:
        if frames < min_frames:
            raise InputError(f"input has {frames} frames; this model needs at least {min_frames}")
        return np.ones((batch, frames), dtype=np.int64)
    m = _as_array(mask, "attention_mask")
    if m.dtype.kind not in "biu":
        raise InputError(f"attention_mask must be integer or bool (1 = real frame), got {m.dtype}")
    if m.shape != (batch, frames):
        raise InputError(f"attention_mask shape {m.shape} does not match input_features "
                         f"[batch, frames] = {(batch, frames)}")
    if m.size and (m.min() < 0 or m.max() > 1):
        raise InputError(f"attention_mask must hold only 0 and 1, got values in [{m.min()}, {m.max()}]")
    m = np.ascontiguousarray(m, dtype=np.int64)
    lengths = m.sum(axis=1)
    # Right padding: each row is lengths[i] ones followed by zeros.
    expected = (np.arange(frames)[None, :] < lengths[:, None]).astype(np.int64)
    if not np.array_equal(m, expected):
        row = int(np.argwhere((m != expected).any(axis=1))[0][0])
        raise InputError(f"attention_mask row {row} is not right-padded (1s then 0s); "
                         "pad utterances at the end")
    short = np.flatnonzero(lengths < min_frames)
    if short.size:
        i = int(short[0])
        raise InputError(f"utterance {i} has {int(lengths[i])} real frames; this model needs at least "
                         f"{min_frames} (audio too short)")
    return m


def check_waveform(waveform, lengths, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """-> float32 (B, S) and int64 (B,) lengths, each in [min_samples, S]."""
    w = _as_array(waveform, "waveform")
    if w.ndim == 1:
        w = w[None]
    if w.ndim != 2 or w.dtype.kind != "f":
        raise InputError(f"waveform must be float [batch, samples], got shape {w.shape} dtype {w.dtype}")
    w = np.ascontiguousarray(w, dtype=np.float32)
    if not np.isfinite(w).all():
        raise InputError("waveform holds NaN/Inf samples")
    if lengths is None:
        lengths = np.full(w.shape[0], w.shape[1], dtype=np.int64)
    n = _as_array(lengths, "lengths")
    if n.dtype.kind not in "iu" or n.shape != (w.shape[0],):
        raise InputError(f"lengths must be integers of shape ({w.shape[0]},), got {n.dtype} {n.shape}")
    if n.size and (n.max() > w.shape[1] or n.min() < min_samples):
        raise InputError(f"lengths must lie in [{min_samples}, {w.shape[1]}] samples, got "
                         f"[{n.min()}, {n.max()}] (audio too short, or lengths beyond the padded batch)")
    return w, np.ascontiguousarray(n, dtype=np.int64)


def check_attention_memory(batch: int, frames: int, heads: int, limit_bytes: int) -> None:
    """Refuse inputs whose (B, H, T, T) float32 attention scores alone exceed `limit_bytes`.

    Attention memory grows with T^2: a 10-minute input in one call would need ~900 GB on
    the 600M model and die by the OOM killer instead of raising.
    """
    need = batch * heads * frames * frames * 4
    if need > limit_bytes:
        raise InputError(f"input of batch {batch} x {frames} frames needs ~{need / 2**30:.1f} GiB for attention "
                         f"scores per layer (limit {limit_bytes / 2**30:.1f} GiB, Session(max_attention_bytes=...)); "
                         "split it, or use transcribe / infer, which chunk long audio")
