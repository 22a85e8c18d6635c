"""torch -> ONNX with named dynamic axes: the TorchScript-based ``torch.onnx.export(dynamo=False)``.

Its known failure on this model -- a rotary sequence length baked into the graph -- comes
from transformers' Python-side cache, which our reference model does not have: every shape
is read from a tensor, so the traced graph is dynamic in batch and frames (the parity check
runs at lengths unlike the trace length to prove it). The dynamo exporter also produces
correct graphs from our model, but takes ~20x longer (7-10 s vs 0.4 s for a 2-layer model)
and needs onnxscript.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from runtime.errors import ExportError

from ..model.registry import HEADS
from .prepare import for_target

TRACE_FRAMES = 64


def example_batch(frames: int, feature_dim: int, min_frames: int, seed: int = 0):
    """A right-padded batch of 3: full, ~70% and ~45% of `frames` real frames (>= min_frames)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((3, frames, feature_dim)).astype(np.float32)
    lengths = [frames, max(min_frames, int(frames * 0.7)), max(min_frames, int(frames * 0.45))]
    mask = (np.arange(frames)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    features[mask == 0] = 0.0
    return features, mask


def trace(module: torch.nn.Module, args: tuple, path: Path, opset: int, input_names: list[str],
          output_names: list[str], dynamic: dict) -> None:
    """TorchScript trace with named dynamic axes (external data scattered if > 2 GB; consolidated later)."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on shape reads are expected; parity checks them
            torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc


def output_axes(model: torch.nn.Module, names) -> dict:
    axes = {}
    for name in names:
        axes[name] = {0: "batch"}
        if HEADS[model.head].per_frame and name != "output_lengths":
            axes[name][1] = "output_frames" if model.config.add_adapter else "frames"
    return axes


def trace_features(model: torch.nn.Module, path: Path, opset: int, min_frames: int, target: str = "ort") -> None:
    """The features-in model: input_features (B, T, 160), attention_mask (B, T), traced for `target`."""
    model = for_target(model, target)
    features, mask = example_batch(max(TRACE_FRAMES, min_frames), model.config.feature_projection_input_dim,
                                   min_frames)
    names = list(HEADS[model.head].outputs)
    dynamic = {"input_features": {0: "batch", 1: "frames"}, "attention_mask": {0: "batch", 1: "frames"},
               **output_axes(model, names)}
    trace(model, (torch.from_numpy(features), torch.from_numpy(mask)), path, opset,
          ["input_features", "attention_mask"], names, dynamic)
