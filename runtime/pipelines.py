"""``runtime.pipeline(task, model=ARTIFACT)``: transformers' audio pipelines over an exported model.

Called and answering as ``transformers.pipeline`` does for these two tasks::

    asr = pipeline("automatic-speech-recognition", model="artifact")
    asr("a.wav")                                   # {"text": "..."}
    asr(audio, return_timestamps="word")           # {"text": ..., "chunks": [{"text", "timestamp": (s, e)}]}
    clf = pipeline("audio-classification", model="artifact")
    clf({"raw": audio, "sampling_rate": 8000}, top_k=2)   # [{"score", "label"}, ...]

Inputs: a sound-file path, a 1-D float array at the model's rate, bytes of a sound file, a
``{"raw" | "array": samples, "sampling_rate": rate}`` dict (resampled), or a list of these
(answered as a list). Where this differs from transformers, it says so in runtime/README.md:
long audio is always chunked (30 s, 2 s context; transformers needs ``chunk_length_s``),
a 2-D array is refused (transformers reads it as channels), and an end time past the
recording's last sample is clipped to its duration.
"""

from __future__ import annotations

import io
import numbers
from pathlib import Path

import numpy as np

from .errors import InputError
from .inputs import is_whole

ASR, CLASSIFICATION = "automatic-speech-recognition", "audio-classification"
TASK_HEADS = {ASR: ("CTC",), CLASSIFICATION: ("SequenceClassification",)}


def pipeline(task: str, model, precision: str = "fp32", provider: str | None = None, threads: int | None = None,
             batch_size: int = 1, device=None, verify: bool = True, **defaults):
    """A pipeline for `task` over `model` (an artifact directory, or a runtime.Session).

    `defaults` are call options every call gets unless it gives its own (chunk_length_s,
    stride_length_s, return_timestamps for ASR; top_k, function_to_apply for classification).
    """
    from .session import Session

    if task not in TASK_HEADS:
        raise InputError(f"task {task!r} is not offered; runtime.pipeline has {', '.join(TASK_HEADS)}")
    session = model if isinstance(model, Session) else Session(
        model, precision=precision, provider=provider or _provider(device), threads=threads, verify=verify)
    if session.head not in TASK_HEADS[task]:
        raise InputError(f"{task!r} needs a {' or '.join(TASK_HEADS[task])} head; this model's head is "
                         f"{session.head}")
    cls = SpeechRecognitionPipeline if task == ASR else AudioClassificationPipeline
    return cls(session, batch_size, defaults)


def _provider(device) -> str:
    if device in (None, -1, "cpu"):
        return "cpu"
    if device == "cuda" or str(device).startswith("cuda:") or (isinstance(device, int) and device >= 0):
        return "cuda"
    raise InputError(f"device={device!r} is unknown; use 'cpu', 'cuda' or a GPU index")


class _AudioTaskPipeline:
    OPTIONS: tuple[str, ...] = ()

    def __init__(self, session, batch_size: int, defaults: dict):
        self.session = session
        self.batch_size = batch_size
        self.defaults = self._options(defaults)

    def _options(self, given: dict) -> dict:
        unknown = sorted(set(given) - set(self.OPTIONS))
        if unknown:
            raise InputError(f"{type(self).__name__} got unknown option(s) {', '.join(unknown)}; it takes "
                             f"batch_size, {', '.join(self.OPTIONS)}")
        return given

    def _audio(self, inputs, features) -> tuple[list[np.ndarray], bool]:
        """(waves at the rate of `features` (a FeatureExtractor), whether one input was given)."""
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        if not items:
            raise InputError("no audio given (empty list)")
        return [_one_wave(item, i, features) for i, item in enumerate(items)], single

    def _pipe(self, batch_size, **options):
        from .audio_runner import AudioRunner

        batch_size = self.batch_size if batch_size is None else batch_size
        if not is_whole(batch_size) or batch_size < 1:
            raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        return AudioRunner(self.session, batch_size=int(batch_size), **options)


class SpeechRecognitionPipeline(_AudioTaskPipeline):
    OPTIONS = ("return_timestamps", "chunk_length_s", "stride_length_s")

    def __call__(self, inputs, batch_size: int | None = None, **options):
        options = {**self.defaults, **self._options(options)}
        stamps = options.get("return_timestamps")
        if stamps not in (None, False, "word", "char"):
            raise InputError(f"return_timestamps={stamps!r}: a CTC model gives 'word' or 'char' timestamps")
        pipe = self._pipe(batch_size, **_chunking(options.get("chunk_length_s"), options.get("stride_length_s")))
        waves, single = self._audio(inputs, pipe.features)
        tokenizer = pipe.decoder
        results = []
        for alignment in pipe.align(waves):
            if not stamps:
                results.append({"text": tokenizer.decode(alignment.ids)})
                continue
            out = tokenizer.decode(alignment.ids, output_char_offsets=True, output_word_offsets=stamps == "word")
            items = out.word_offsets if stamps == "word" else out.char_offsets
            chunks = [{"text": item[stamps], "timestamp": alignment.span(item["start_offset"], item["end_offset"])}
                      for item in items]
            results.append({"text": out.text, "chunks": chunks})
        return results[0] if single else results


def _seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise InputError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _chunking(chunk_length_s, stride_length_s) -> dict:
    """transformers' chunk_length_s / stride_length_s (context on each side, default chunk / 6) -> ours."""
    if chunk_length_s is None:
        if stride_length_s is not None:
            raise InputError("stride_length_s needs chunk_length_s")
        return {}
    chunk = _seconds("chunk_length_s", chunk_length_s)
    stride = chunk / 6 if stride_length_s is None else stride_length_s
    if isinstance(stride, (list, tuple)):
        if len(stride) != 2 or stride[0] != stride[1]:
            raise InputError(f"stride_length_s={stride!r}: only equal context on both sides is supported")
        stride = stride[0]
    return {"chunk_seconds": chunk, "overlap_seconds": _seconds("stride_length_s", stride)}


class AudioClassificationPipeline(_AudioTaskPipeline):
    OPTIONS = ("top_k", "function_to_apply")

    def __call__(self, inputs, batch_size: int | None = None, **options):
        options = {"top_k": 5, **self.defaults, **self._options(options)}
        config = self.session.config
        labels = {int(k): v for k, v in config["id2label"].items()}
        top_k = options["top_k"]
        if top_k is not None and (not is_whole(top_k) or top_k < 0):
            raise InputError(f"top_k must be a whole number >= 0 (or None: every label), got {top_k!r}")
        top_k = len(labels) if top_k is None else min(int(top_k), len(labels))
        function = options.get("function_to_apply") or {"regression": "none", "multi_label_classification": "sigmoid"
                                                        }.get(config.get("problem_type"), "softmax")
        if function not in ("softmax", "sigmoid", "none"):
            raise InputError(f"function_to_apply={function!r}; expected 'softmax', 'sigmoid' or 'none'")
        pipe = self._pipe(batch_size)
        waves, single = self._audio(inputs, pipe.features)
        logits = pipe.run_sorted(waves, lambda out, mask: list(out["logits"].astype(np.float64)))
        results = []
        for row in logits:
            scores = _apply(function, row)
            best = np.argsort(-scores, kind="stable")[:top_k]
            results.append([{"score": float(scores[i]), "label": labels.get(int(i), str(int(i)))} for i in best])
        return results[0] if single else results


def _apply(function: str, row: np.ndarray) -> np.ndarray:
    if function == "softmax":
        exp = np.exp(row - row.max())
        return exp / exp.sum()
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-row))
    return row


def _one_wave(item, index: int, features) -> np.ndarray:
    """One pipeline input -> checked mono float32 samples at the rate of `features` (a FeatureExtractor)."""
    from .audio import checked_at, load_audio

    rate = features.sampling_rate
    if isinstance(item, (str, Path)):
        return load_audio(item, rate)
    if isinstance(item, (bytes, bytearray)):
        return load_audio(io.BytesIO(item), rate, name=f"input {index} (bytes)")
    if isinstance(item, dict):
        samples = item.get("raw", item.get("array"))
        if samples is None or "sampling_rate" not in item:
            raise InputError(f"input {index} is a dict with keys {sorted(item)}; expected 'raw' (or 'array') "
                             "samples and their 'sampling_rate'")
        source = item["sampling_rate"]
        if not is_whole(source) or source <= 0:
            raise InputError(f"input {index}: sampling_rate must be a whole number of Hz > 0, got {source!r}")
        return checked_at(features, samples, index, int(source))
    if isinstance(item, np.ndarray):
        if item.ndim != 1:
            raise InputError(f"input {index} has shape {item.shape}; a pipeline takes mono 1-D samples (pass a list "
                             "for several utterances, downmix channels first)")
        return checked_at(features, item, index)
    raise InputError(f"input {index} is a {type(item).__name__}; expected a file path, bytes, a 1-D array or "
                     "{'raw': array, 'sampling_rate': rate}")
