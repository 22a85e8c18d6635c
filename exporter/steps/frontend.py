"""Export step (``--with-frontend``): the raw-audio variant, front end + model in one graph.

Inputs `waveform` float32 [batch, samples] (16 kHz, [-1, 1], right-padded) and
`waveform_lengths` int64 [batch]; outputs the head's outputs plus `output_lengths`
(real output frames per utterance). A C++ onnxruntime caller needs nothing else.
Parity: against runtime.FeatureExtractor (numpy) + the PyTorch reference, 1e-3.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from runtime.features import FeatureExtractor
from runtime.shapes import min_samples

from ..artifact import onnx_metadata, variant_entry
from ..model.frontend import WaveformModel
from ..model.registry import OUTPUT_NAMES
from ..parity.reference import example_audio, frontend_parity, parity_record
from ..trace.prepare import for_target
from ..trace.trace import output_axes, trace
from .cpu_form import add_cpu_form
from .fp32 import build_variant

log = logging.getLogger("w2vbert")

NAME = "model.fp32.frontend.onnx"
TRACE_SECONDS = 1.3
INPUTS = [{"name": "waveform", "dtype": "float32", "shape": ["batch", "samples"]},
          {"name": "waveform_lengths", "dtype": "int64", "shape": ["batch"]}]


def add_frontend_variant(model, staging: Path, manifest: dict, opset: int, target: str = "ort") -> None:
    pre = manifest["preprocessor"]
    wrapped = WaveformModel(for_target(model, target), pre).eval()
    rate = int(pre.get("sampling_rate", 16000))
    shortest = min_samples(manifest["min_frames"], int(pre.get("stride", 2)))
    names = list(OUTPUT_NAMES[model.head]) + ["output_lengths"]
    dynamic = {"waveform": {0: "batch", 1: "samples"}, "waveform_lengths": {0: "batch"},
               **output_axes(model, names)}
    wave, lengths = example_audio((TRACE_SECONDS, TRACE_SECONDS * 0.6), rate, shortest)
    meta = {**onnx_metadata(manifest), "w2vbert.inputs": json.dumps(INPUTS)}
    log.info("tracing the raw-audio variant (front end + model)")
    files = build_variant(staging, NAME, lambda p: trace(
        wrapped, (torch.from_numpy(wave), torch.from_numpy(lengths)), p, opset,
        ["waveform", "waveform_lengths"], names, dynamic), meta)
    log.info("parity of the raw-audio variant vs numpy front end + reference")
    rows = frontend_parity(model, staging / NAME, FeatureExtractor.from_params(pre), rate, shortest)
    variant = manifest["variants"]["fp32-frontend"] = variant_entry(
        NAME, files, target, "fp32", frontend=True, inputs=json.loads(meta["w2vbert.inputs"]),
        parity=parity_record(rows))
    if target == "ort":
        add_cpu_form(staging, variant, target, lambda path: parity_record(
            frontend_parity(model, path, FeatureExtractor.from_params(pre), rate, shortest)))
