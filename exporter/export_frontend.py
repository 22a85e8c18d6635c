"""The raw-audio variant: front end + model in one graph (``--with-frontend``).

Inputs `waveform` float32 [batch, samples] (16 kHz, [-1, 1], right-padded) and
`waveform_lengths` int64 [batch]; outputs the head's outputs plus `output_lengths`
(real output frames per utterance). A C++ onnxruntime caller needs nothing else.
Parity: against runtime.FeatureExtractor (numpy) + the PyTorch reference, 1e-3.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from runtime.features import FeatureExtractor
from runtime.shapes import min_samples

from .export import build_variant, output_axes, parity_record, trace
from .frontend import WaveformModel
from .heads import OUTPUT_NAMES
from .parity import OutputDiff, assert_close, keep_worst

log = logging.getLogger("w2vbert")

NAME = "model.fp32.frontend.onnx"
TRACE_SECONDS = 1.3
PARITY_SECONDS = ((0.9, 0.6, 0.4), (2.1, 1.7, 1.0))  # per batch: padded utterances, unlike the trace


def example_audio(seconds, rate: int, min_samples: int, seed: int = 0):
    """Right-padded speech-like noise (a decaying chirp + noise) of the given durations."""
    rng = np.random.default_rng(seed)
    lengths = np.array([max(min_samples, int(s * rate)) for s in seconds])
    wave = np.zeros((len(lengths), lengths.max()), np.float32)
    for i, n in enumerate(lengths):
        t = np.arange(n) / rate
        wave[i, :n] = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(n)
    return wave, lengths.astype(np.int64)


def add_frontend_variant(model, staging: Path, manifest: dict, opset: int, metadata: dict,
                         target: str = "ort") -> None:
    from .fused import for_target

    pre = manifest["preprocessor"]
    wrapped = WaveformModel(for_target(model, target), pre).eval()
    rate = int(pre.get("sampling_rate", 16000))
    shortest = min_samples(manifest["min_frames"], int(pre.get("stride", 2)))
    names = list(OUTPUT_NAMES[model.head]) + ["output_lengths"]
    dynamic = {"waveform": {0: "batch", 1: "samples"}, "waveform_lengths": {0: "batch"},
               **output_axes(model, names)}
    wave, lengths = example_audio((TRACE_SECONDS, TRACE_SECONDS * 0.6), rate, shortest)
    meta = {**metadata, "w2vbert.inputs": json.dumps(
        [{"name": "waveform", "dtype": "float32", "shape": ["batch", "samples"]},
         {"name": "waveform_lengths", "dtype": "int64", "shape": ["batch"]}])}
    log.info("tracing the raw-audio variant (front end + model)")
    files = build_variant(staging, NAME, lambda p: trace(
        wrapped, (torch.from_numpy(wave), torch.from_numpy(lengths)), p, opset,
        ["waveform", "waveform_lengths"], names, dynamic), meta)
    log.info("parity of the raw-audio variant vs numpy front end + reference")
    rows = frontend_parity(model, staging / NAME, FeatureExtractor.from_params(pre), rate, shortest)
    variant = manifest["variants"]["fp32-frontend"] = {
        "file": NAME, "files": files, "target": target, "precision": "fp32", "frontend": True,
        "inputs": json.loads(meta["w2vbert.inputs"]), "parity": parity_record(rows)}
    if target == "ort":
        from .cpu_form import add_cpu_form

        add_cpu_form(staging, variant, target, lambda path: parity_record(
            frontend_parity(model, path, FeatureExtractor.from_params(pre), rate, shortest)))


def frontend_parity(model, path: Path, extractor: FeatureExtractor, rate: int, shortest: int) -> list[OutputDiff]:
    import onnxruntime as ort

    from runtime.shapes import output_frames

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst: dict[str, OutputDiff] = {}
    for k, seconds in enumerate(PARITY_SECONDS):
        wave, lengths = example_audio(seconds, rate, shortest, seed=k + 1)
        features, mask = extractor([w[:n] for w, n in zip(wave, lengths)])
        with torch.no_grad():
            reference = {n: v.numpy() for n, v in model(torch.from_numpy(features), torch.from_numpy(mask)).items()}
        expected_lengths = [output_frames(int(n), model.config.to_dict()) for n in mask.sum(axis=1)]
        reference["output_lengths"] = np.array(expected_lengths, np.int64)
        got = dict(zip(names, session.run(None, {"waveform": wave, "waveform_lengths": lengths})))
        label = f"{path.name}, {seconds} s"
        keep_worst(worst, assert_close(reference, got, "fp32-frontend", label=label))
    return list(worst.values())
