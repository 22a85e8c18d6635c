"""An exported graph against the PyTorch reference, on padded batches unlike the trace's shapes.

One loop for every backend: features-in ONNX files (export, verify), TensorRT plans
(verify --backend tensorrt) and the raw-audio variant (its input is audio; the reference
side is runtime.FeatureExtractor + the model). Each raises ParityError with the diff table
on a mismatch and returns the worst row per output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from runtime.shapes import output_frames

from ..trace.trace import example_batch
from .compare import OutputDiff, assert_close, keep_worst
from .runners import frontend_runner, ort_runner

log = logging.getLogger("w2vbert")

PARITY_FRAMES = (37, 101)  # both unlike the trace's 64 frames: proves the frames axis is dynamic
PARITY_SECONDS = ((0.9, 0.6, 0.4), (2.1, 1.7, 1.0))  # raw audio, per batch: padded utterances, unlike the trace


def parity_record(rows: list[OutputDiff]) -> dict:
    """Log the rows and return them as the manifest's parity figures."""
    for row in rows:
        log.info("  %s", row.row())
    return {r.name: {"max_abs": r.max_abs, "max_rel": r.max_rel, "tolerance": r.tolerance} for r in rows}


def onnx_parity(model: torch.nn.Module, onnx_path: Path, min_frames: int, precision: str = "fp32",
                frames=PARITY_FRAMES, threads: int | None = None) -> list[OutputDiff]:
    """Run the ONNX file with onnxruntime and the reference on padded batches; raise on mismatch."""
    return backend_parity(model, ort_runner(onnx_path, threads), min_frames, precision, frames, onnx_path.name)


def backend_parity(model: torch.nn.Module, run, min_frames: int, precision: str, frames, label: str):
    """Compare run(features, mask) -> outputs with the reference on padded batches of 3; raise on mismatch."""
    worst: dict[str, OutputDiff] = {}
    for n in frames:
        features, mask = example_batch(max(n, min_frames), model.config.feature_projection_input_dim,
                                       min_frames, seed=n)
        with torch.no_grad():
            reference = {k: v.numpy() for k, v in model(torch.from_numpy(features), torch.from_numpy(mask)).items()}
        got = run(features, mask)
        keep_worst(worst, assert_close(reference, got, precision, label=f"{label}, {n} frames, batch 3"))
    return list(worst.values())


def example_audio(seconds, rate: int, min_samples: int, seed: int = 0):
    """Right-padded speech-like noise (a decaying chirp + noise) of the given durations."""
    rng = np.random.default_rng(seed)
    lengths = np.array([max(min_samples, int(s * rate)) for s in seconds])
    wave = np.zeros((len(lengths), lengths.max()), np.float32)
    for i, n in enumerate(lengths):
        t = np.arange(n) / rate
        wave[i, :n] = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(n)
    return wave, lengths.astype(np.int64)


def frontend_parity(model, path: Path, extractor, rate: int, shortest: int) -> list[OutputDiff]:
    """The raw-audio ONNX vs `extractor` (runtime.FeatureExtractor) + the reference, with output lengths."""
    run = frontend_runner(path)
    worst: dict[str, OutputDiff] = {}
    for k, seconds in enumerate(PARITY_SECONDS):
        wave, lengths = example_audio(seconds, rate, shortest, seed=k + 1)
        features, mask = extractor([w[:n] for w, n in zip(wave, lengths)])
        with torch.no_grad():
            reference = {n: v.numpy() for n, v in model(torch.from_numpy(features), torch.from_numpy(mask)).items()}
        expected_lengths = [output_frames(int(n), model.config.to_dict()) for n in mask.sum(axis=1)]
        reference["output_lengths"] = np.array(expected_lengths, np.int64)
        label = f"{path.name}, {seconds} s"
        keep_worst(worst, assert_close(reference, run(wave, lengths), "fp32-frontend", label=label))
    return list(worst.values())
