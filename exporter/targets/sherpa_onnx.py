"""What sherpa-onnx needs beside the graph: tokens.txt, the metadata of its FireRedASR-CTC loader, a
README, and a runner with its input contract (no torch).

sherpa-onnx 2.0.1's `fire_red_asr_ctc` model type (offline-fire-red-asr-ctc-model.cc) computes an
80-bin Kaldi fbank with snip_edges, samples at int16 scale, no dither -- what our front end computes
before its normalisation -- and applies `cmvn_mean` / `cmvn_inv_stddev` from the metadata; ours are
0 and 1 because the per-utterance normalisation is inside the graph. Batches are padded with
log(1e-10). Decoding is CTC greedy with the blank `<blk>`, tokens concatenated and `▁` read as a space.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.errors import ArtifactError, ExportError
from runtime.fbank_constants import HOP_LENGTH
from runtime.timestamps import samples_per_frame

DIR = "sherpa-onnx"
PAD_VALUE = -23.025850929940457  # log(1e-10): what sherpa-onnx pads a batch of log-mel with
MODEL_TYPE = "fire-red-asr-2-ctc"
BLANK, SPACE = "<blk>", "\u2581"


def subsampling_factor(config: dict) -> int:
    """10 ms fbank frames per output frame: 2 for the stacking, x stride per adapter layer."""
    return samples_per_frame(config, stride=2) // HOP_LENGTH


def sherpa_metadata(config: dict, bins: int = 80) -> dict[str, str]:
    return {"model_type": MODEL_TYPE, "cmvn_mean": ",".join(["0"] * bins),
            "cmvn_inv_stddev": ",".join(["1"] * bins), "subsampling_factor": str(subsampling_factor(config)),
            "vocab_size": str(config["vocab_size"])}


def tokens_text(checkpoint_files: Path, vocab_size: int) -> str:
    """tokens.txt ("symbol id" per line) from the vocab.json and tokenizer_config.json in a folder.

    Every output id needs a line: sherpa-onnx looks up each id the model emits and aborts on a gap."""
    try:
        vocab = json.loads((checkpoint_files / "vocab.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"--sherpa-onnx needs the checkpoint's vocab.json ({exc})") from exc
    settings = {}
    if (checkpoint_files / "tokenizer_config.json").is_file():
        settings = json.loads((checkpoint_files / "tokenizer_config.json").read_text(encoding="utf-8"))
    pad, delimiter = settings.get("pad_token", "<pad>"), settings.get("word_delimiter_token", "|")
    if not isinstance(pad, str) or pad not in vocab:
        raise ExportError(f"vocab.json has no pad token {pad!r}: sherpa-onnx needs the CTC blank")
    missing = sorted(set(range(vocab_size)) - {int(i) for i in vocab.values()})
    if missing:
        raise ExportError(f"vocab.json has no token for output id(s) {missing[:10]} of the model's {vocab_size}; "
                          "sherpa-onnx needs one per id")
    lines = []
    for token, index in sorted(vocab.items(), key=lambda item: int(item[1])):
        symbol = BLANK if token == pad else SPACE if token == delimiter else token
        if not symbol or any(ch.isspace() for ch in symbol):
            raise ExportError(f"vocab token {token!r} (id {index}) holds whitespace: tokens.txt cannot carry it")
        lines.append(f"{symbol} {int(index)}")
    return "\n".join(lines) + "\n"


def readme_text(int8: bool) -> str:
    model = "model.int8.onnx" if int8 else "model.onnx"
    return f"""Wav2Vec2-BERT CTC model for sherpa-onnx (model type fire_red_asr_ctc), written by w2vbert-deploy.

  sherpa-onnx-offline --fire-red-asr-ctc={model} --tokens=tokens.txt audio.wav

  import sherpa_onnx
  recognizer = sherpa_onnx.OfflineRecognizer.from_fire_red_asr_ctc(model="{model}", tokens="tokens.txt")

Input: 16 kHz mono audio (sherpa resamples other rates). The graph takes sherpa's raw 80-bin log-mel
and lengths and does the rest of the front end (per-utterance normalisation, stacking) itself.
model.onnx is fp32{'; model.int8.onnx is int8 (dynamic, weight MatMuls), gated on task accuracy' if int8 else ''}.
"""


def sherpa_runner(path: Path, threads: int | None = None):
    """The sherpa graph on onnxruntime as run((x, x_lens), mask) -> {"logits", "lengths"}: the
    accuracy gate's callable contract, with the raw log-mel batch and its lengths as the features."""
    from runtime.ort_session import ort_session

    session = ort_session(path, threads=threads or None)
    inputs = [i.name for i in session.get_inputs()]

    def run(features, mask=None):
        x, x_lens = features
        logits, lengths = session.run(None, dict(zip(inputs, (x, x_lens))))
        return {"logits": logits, "lengths": lengths}
    return run


def logmel_batches(utterances: list[np.ndarray], stride: int = 2, batch_size: int = 8):
    """[((x, x_lens), stacked_mask)] from raw log-mel utterances, padded as sherpa pads them; the
    mask counts model frames (fbank frames // stride), which is what the gates cut outputs by."""
    batches = []
    for lo in range(0, len(utterances), batch_size):
        group = utterances[lo:lo + batch_size]
        longest = max(len(u) for u in group)
        x = np.full((len(group), longest, group[0].shape[1]), PAD_VALUE, np.float32)
        for i, u in enumerate(group):
            x[i, :len(u)] = u
        lengths = np.array([len(u) for u in group], np.int64)
        frames = -(-longest // stride)
        mask = (np.arange(frames)[None, :] < (lengths // stride)[:, None]).astype(np.int64)
        batches.append(((x, lengths), mask))
    return batches


def read_model_type(path: Path) -> str:
    from runtime.ort_session import ort_session

    meta = ort_session(path).get_modelmeta()
    model_type = meta.custom_metadata_map.get("model_type")
    if model_type != MODEL_TYPE:
        raise ArtifactError(f"{path} has model_type {model_type!r}; sherpa-onnx's loader needs {MODEL_TYPE!r}")
    return model_type


def decode_waves(recognizer, waves, batched: bool) -> list:
    """Run sherpa-onnx's OfflineRecognizer on 16 kHz waves (one decode_streams call, or one call per
    wave); returns its streams, whose .result holds text, tokens and timestamps."""
    streams = []
    for wave in waves:
        stream = recognizer.create_stream()
        stream.accept_waveform(16000, wave)
        streams.append(stream)
    if batched:
        recognizer.decode_streams(streams)
    else:
        for stream in streams:
            recognizer.decode_stream(stream)
    return streams
