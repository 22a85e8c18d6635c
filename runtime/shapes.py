"""Length arithmetic of the model, in plain Python (the runtime has no torch).

Mirrors ``exporter.model.conformer.conv_output_lengths`` and the XVector pooling lengths;
tests check both against each other. A C++ caller gets the same formula as text
from the ONNX metadata (:func:`output_length_formula`).
"""

from __future__ import annotations

from typing import Any

from .fbank_constants import FRAME_LENGTH, HOP_LENGTH


def output_frames(frames: int, config: dict[str, Any]) -> int:
    """Real output frames for `frames` real input frames (the adapter subsamples)."""
    if config.get("add_adapter"):
        kernel, stride = config["adapter_kernel_size"], config["adapter_stride"]
        for _ in range(config["num_adapter_layers"]):
            frames = (frames + 2 * (kernel // 2) - kernel) // stride + 1
    return frames


def output_length_formula(config: dict[str, Any]) -> str:
    if not config.get("add_adapter"):
        return "out = frames"
    k, s, n = config["adapter_kernel_size"], config["adapter_stride"], config["num_adapter_layers"]
    return f"out = frames; repeat {n} times: out = floor((out + {2 * (k // 2)} - {k}) / {s}) + 1"


def min_samples(min_frames: int, stride: int = 2) -> int:
    """16 kHz samples giving `min_frames` stacked frames (400-sample windows every 160 samples);
    never fewer than 2 fbank frames, which the unbiased per-bin variance needs."""
    return FRAME_LENGTH + HOP_LENGTH * (max(2, min_frames * stride) - 1)


def min_frames(config: dict[str, Any], head: str) -> int:
    """Fewest real input frames (of 160-dim stacked features) one utterance may have.

    The adapter must leave >= 1 frame; XVector's TDNN needs its receptive field and
    its unbiased standard deviation needs >= 2 pooled frames.
    """
    for frames in range(1, 100_000):
        out = output_frames(frames, config)
        if out < 1:
            continue
        if head != "XVector":
            return frames
        receptive = sum(d * (k - 1) for k, d in zip(config["tdnn_kernel"], config["tdnn_dilation"]))
        pooled = out - sum(k - 1 for k in config["tdnn_kernel"])
        if out - receptive >= 1 and pooled >= 2:
            return frames
    raise ValueError("no input length gives a valid output for this config")
