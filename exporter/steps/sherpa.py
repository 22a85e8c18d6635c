"""Export step (``--sherpa-onnx``, CTC heads): OUT/sherpa-onnx/ for sherpa-onnx's C++ runtime.

    model.onnx (+ .data over 2 GB)   raw log-mel in (x [N, T, 80], x_lens [N]); logits, lengths out
    model.int8.onnx                  with --precision ...int8..., gated like our int8
    tokens.txt, README.txt

The graph is the reference model behind exporter.model.frontend.LogMelModel, traced for the
CPU (MultiHeadAttention, Add + LayerNormalization), checked against runtime.FeatureExtractor +
the reference like the raw-audio variant; the manifest's `sherpa_onnx` entry records it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from runtime.audio import load_audio
from runtime.errors import GateError, OptionError
from runtime.features import FeatureExtractor
from runtime.shapes import min_samples, output_frames

from ..artifact import onnx_metadata
from ..model.frontend import LogMelModel
from ..parity.compare import OutputDiff, assert_close, keep_worst
from ..parity.reference import PARITY_SECONDS, example_audio, parity_record
from ..quantize import gates
from ..quantize.calibration import AUDIO_SUFFIXES, BUNDLED_GATE, gate_data_record, gate_files
from ..quantize.convert import quantize
from ..targets.sherpa_onnx import (
    DIR,
    logmel_batches,
    readme_text,
    sherpa_metadata,
    sherpa_runner,
    subsampling_factor,
    tokens_text,
)
from ..trace.prepare import for_target
from ..trace.trace import trace
from .fp32 import build_variant

log = logging.getLogger("w2vbert")

INPUTS = [{"name": "x", "dtype": "float32", "shape": ["batch", "frames", 80]},
          {"name": "x_lens", "dtype": "int64", "shape": ["batch"]}]
TRACE_SECONDS = (1.3, 0.8)


def add_sherpa(model, staging: Path, manifest: dict, opset: int, precisions, options) -> None:
    (staging / DIR).mkdir()
    pre, config = manifest["preprocessor"], manifest["config"]
    raw = FeatureExtractor.from_params({**pre, "do_normalize_per_mel_bins": False})
    name = f"{DIR}/model.onnx"
    log.info("tracing the sherpa-onnx graph (raw log-mel in: normalisation and stacking inside)")
    files = build_variant(staging, name, lambda p: _trace(model, p, opset, raw, pre), _metadata(manifest))
    rows = sherpa_parity(model, staging / name, pre, manifest["min_frames"])
    entry = {"dir": DIR, "model": name, "files": [f"{DIR}/{f}" for f in files], "parity": parity_record(rows),
             "subsampling_factor": subsampling_factor(config), "tokens": f"{DIR}/tokens.txt"}
    if "int8" in precisions:
        entry["int8"] = _int8(staging, manifest, raw, options)
    (staging / DIR / "tokens.txt").write_text(tokens_text(staging, config["vocab_size"]), encoding="utf-8")
    (staging / DIR / "README.txt").write_text(readme_text("int8" in precisions))
    manifest["sherpa_onnx"] = entry


def _metadata(manifest: dict) -> dict[str, str]:
    vocab = manifest["config"]["vocab_size"]
    outputs = [{"name": "logits", "dtype": "float32", "shape": ["batch", "output_frames", vocab]},
               {"name": "lengths", "dtype": "int64", "shape": ["batch"]}]
    return {**onnx_metadata(manifest), **sherpa_metadata(manifest["config"]), "w2vbert.inputs": json.dumps(INPUTS),
            "w2vbert.outputs": json.dumps(outputs)}


def _trace(model, path: Path, opset: int, raw: FeatureExtractor, pre: dict) -> None:
    wrapped = LogMelModel(for_target(model, "ort", fused_norms=False), int(pre.get("stride", 2))).eval()
    (x, x_lens), _ = _logmel_batch(raw, TRACE_SECONDS, pre, 1)
    dynamic = {"x": {0: "batch", 1: "frames"}, "x_lens": {0: "batch"},
               "logits": {0: "batch", 1: "output_frames"}, "lengths": {0: "batch"}}
    trace(wrapped, (torch.from_numpy(x), torch.from_numpy(x_lens)), path, opset, ["x", "x_lens"],
          ["logits", "lengths"], dynamic)


def _logmel_batch(raw: FeatureExtractor, seconds, pre: dict, min_frames: int, seed: int = 0):
    """((x, x_lens), the utterances) for speech-like example audio of the given durations."""
    rate = int(pre.get("sampling_rate", 16000))
    wave, lengths = example_audio(seconds, rate, min_samples(min_frames, int(pre.get("stride", 2))), seed)
    utterances = [w[:n] for w, n in zip(wave, lengths)]
    (x, x_lens), _ = logmel_batches(raw.fbank(utterances))[0]
    return (x, x_lens), utterances


def sherpa_parity(model, path: Path, pre: dict, min_frames: int) -> list[OutputDiff]:
    """The sherpa graph on raw log-mel vs FeatureExtractor + the reference, padded batches, lengths too."""
    raw = FeatureExtractor.from_params({**pre, "do_normalize_per_mel_bins": False})
    full = FeatureExtractor.from_params(pre)
    run = sherpa_runner(path)
    worst: dict[str, OutputDiff] = {}
    for k, seconds in enumerate(PARITY_SECONDS):
        inputs, utterances = _logmel_batch(raw, seconds, pre, min_frames, seed=k + 1)
        features, mask = full(utterances)
        with torch.no_grad():
            logits = model(torch.from_numpy(features), torch.from_numpy(mask))["logits"].numpy()
        expected = np.array([output_frames(int(n), model.config.to_dict()) for n in mask.sum(axis=1)], np.int64)
        keep_worst(worst, assert_close({"logits": logits, "lengths": expected}, run(inputs), "sherpa-onnx",
                                       label=f"{path.name}, {seconds} s"))
    return list(worst.values())


def _int8(staging: Path, manifest: dict, raw: FeatureExtractor, options) -> dict:
    """model.int8.onnx, judged by the int8 gate against model.onnx on the held-out audio."""
    fp32, int8 = staging / DIR / "model.onnx", staging / DIR / "model.int8.onnx"
    log.info("building %s/model.int8.onnx (int8)", DIR)
    quantize(fp32, int8, "int8")
    batches = gate_batches(options.gate_data, raw, manifest["min_frames"])
    result = gates.evaluate("int8", "CTC", manifest["config"], sherpa_runner(fp32), sherpa_runner(int8), batches,
                            options.gates)
    if not result.passed:
        for path in (int8, int8.with_name(int8.name + ".data")):
            path.unlink(missing_ok=True)
        raise GateError(f"{result.report()}\nsherpa-onnx model.int8.onnx is not written; relax a threshold with "
                        "--gate int8.KEY=VALUE if this loss is acceptable for your task")
    log.info("sherpa-onnx %s", result.report())
    files = [f"{DIR}/{p.name}" for p in (int8, int8.with_name(int8.name + ".data")) if p.exists()]
    return {"file": f"{DIR}/model.int8.onnx", "files": files, "gate": result.record(),
            "gate_data": gate_data_record(options.gate_data)}


def gate_batches(gate_data, raw: FeatureExtractor, min_frames: int):
    """The gate's held-out audio as sherpa's input (raw log-mel, padded as sherpa pads)."""
    files = gate_files(gate_data)
    audio = [f for f in files if f.suffix.lower() in AUDIO_SUFFIXES]
    if not audio:
        raise OptionError(f"the sherpa-onnx int8 gate needs audio files; {gate_data or BUNDLED_GATE} holds only "
                          "feature arrays")
    utterances = [u for u in raw.fbank([load_audio(f, raw.sampling_rate) for f in audio])
                  if len(u) // raw.stride >= min_frames]
    return logmel_batches(utterances, raw.stride)
