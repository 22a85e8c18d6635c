"""The model code a Triton Inference Server's Python backend runs: an artifact served as two models.

A repository's ``model.py`` is one line (``from runtime.triton_model import TritonPythonModel``);
its config.pbtxt (written by exporter.targets.triton) says which kind and which artifact:

* kind "features": ``input_features`` FP32 [-1, 160] + ``attention_mask`` INT64 [-1] -> the head's
  outputs, exactly the ONNX interface. Triton's dynamic batcher merges requests of equal shapes;
  they run as one ``Session.run``.
* kind "audio": ``audio`` FP32 [-1] (mono; ragged, so requests of every length share a batch) and an
  optional ``sampling_rate`` INT32 [1] -> ``text`` (CTC), ``label`` + ``scores`` (classification),
  per-frame ``labels``, ``embeddings`` (XVector) or ``last_hidden_state``. A batch goes through
  ``runtime.audio_runner.AudioRunner`` (sorted by length, padded, long CTC audio chunked).

Each request is checked on its own first: a bad one is answered with the package's message and the
others in its batch still run. Nothing here imports torch or the exporter.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from .errors import DependencyError, InputError, W2VBertError

log = logging.getLogger("w2vbert")

RATES = (1000, 384000)  # sampling rates accepted for resampling, Hz
PREFIX_VARIABLE = "W2VBERT_SERVER_PREFIX"  # set by `w2vbert serve` (exporter.targets.triton_server)


def _pb():
    import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

    return pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from .session import Session

        check_interpreter()
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.kind = params["kind"]
        artifact = Path(params["artifact"])
        if not artifact.is_absolute():  # a repository that carries its artifact: <model>/<version>/<artifact>
            artifact = Path(args["model_repository"]) / args["model_version"] / artifact
        threads = int(params["threads"]) if params.get("threads") else None
        self.session = Session(artifact, precision=params.get("precision", "fp32"),
                               provider=params.get("provider", "cpu"), threads=threads)
        self.max_samples = int(float(params["max_audio_seconds"]) * 16000) if params.get("max_audio_seconds") else None
        if self.kind == "audio":
            self.pipe = self.session.audio_runner(batch_size=int(params.get("batch_size", 8)),
                                              chunk_seconds=float(params.get("chunk_seconds", 30)),
                                              overlap_seconds=float(params.get("overlap_seconds", 2)))

    def execute(self, requests):
        return self._features(requests) if self.kind == "features" else self._audio(requests)

    # ------------------------------------------------------------------ features
    def _features(self, requests):
        pb = _pb()
        feeds = _parse_all(pb, requests, self._feature_inputs)
        good = [i for i, f in enumerate(feeds) if not isinstance(f, Exception)]
        outputs = self._run_together([feeds[i] for i in good])
        answers = {i: out for i, out in zip(good, outputs)}
        return [_error(pb, feeds[i]) if i not in answers else _answer(pb, answers[i]) for i in range(len(requests))]

    def _feature_inputs(self, pb, request):
        features = _input(pb, request, "input_features", required=True)
        mask = _input(pb, request, "attention_mask")
        return features, mask

    def _run_together(self, feeds: list) -> list:
        """One Session.run over every request (equal shapes: Triton batched them); one by one when that
        fails, so each bad request gets its own error and the others their outputs."""
        if not feeds:
            return []
        sizes = [len(f) for f, _ in feeds]
        masks = [m if m is not None else np.ones(f.shape[:2], np.int64) for f, m in feeds]
        try:
            joined = self.session.run(np.concatenate([f for f, _ in feeds]), np.concatenate(masks))
        except (W2VBertError, ValueError):
            return [self._run_one(f, m) for f, m in feeds]
        edges = np.cumsum([0, *sizes])
        return [{k: v[a:b] for k, v in joined.items()} for a, b in zip(edges[:-1], edges[1:])]

    def _run_one(self, features, mask):
        try:
            return self.session.run(features, mask)
        except W2VBertError as exc:
            return exc

    # ------------------------------------------------------------------ audio
    def _audio(self, requests):
        pb = _pb()
        waves = _parse_all(pb, requests, self._wave)
        good = [i for i, w in enumerate(waves) if not isinstance(w, Exception)]
        results = self._pipeline([waves[i] for i in good])
        answers = dict(zip(good, results))
        return [_error(pb, waves[i]) if i not in answers else self._audio_answer(pb, answers[i])
                for i in range(len(requests))]

    def _wave(self, pb, request) -> np.ndarray:
        audio = _input(pb, request, "audio", required=True)
        if self.max_samples is not None and audio.size > self.max_samples:  # before any decoding work
            raise InputError(f"audio of {audio.size / 16000:.1f} s is over this server's limit of "
                             f"{self.max_samples / 16000:.1f} s (w2vbert serve --max-audio-seconds)")
        wave = self.pipe.features.check_wave(audio.reshape(-1))
        if not np.isfinite(wave).all():
            raise InputError("audio holds NaN or Inf samples")
        rate = _input(pb, request, "sampling_rate")
        if rate is not None and int(rate.reshape(-1)[0]) != self.pipe.rate:
            from .audio import resample

            given = int(rate.reshape(-1)[0])
            if not RATES[0] <= given <= RATES[1]:
                raise InputError(f"sampling_rate {given} Hz is not supported; expected {RATES[0]}..{RATES[1]} Hz "
                                 f"(the model runs at {self.pipe.rate} Hz)")
            wave = self.pipe.features.check_wave(resample(wave, given, self.pipe.rate))
        return wave

    def _pipeline(self, waves: list) -> list:
        if not waves:
            return []
        try:
            return self.pipe(waves)
        except W2VBertError:
            return [self._pipeline_one(w) for w in waves]

    def _pipeline_one(self, wave):
        try:
            return self.pipe([wave])[0]
        except W2VBertError as exc:
            return exc

    def _audio_answer(self, pb, result):
        if isinstance(result, Exception):
            return _error(pb, result)
        return _answer(pb, audio_outputs(result, self.session.head, self.session.config))


def audio_outputs(result, head: str, config: dict) -> dict[str, np.ndarray]:
    """One pipeline Result as the audio model's output tensors (with the batch axis of 1)."""
    if head == "CTC":
        return {"text": np.array([[result.text.encode()]], dtype=object)}
    if head == "SequenceClassification":
        labels = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
        scores = np.array([[result.label["scores"][name] for name in labels]], np.float32)
        return {"label": np.array([[result.label["label"].encode()]], dtype=object), "scores": scores}
    if head == "AudioFrameClassification":
        return {"labels": np.array([[label.encode() for label in result.frame_labels]], dtype=object)}
    if head == "XVector":
        return {"embeddings": np.asarray(result.embedding, np.float32)[None]}
    return {"last_hidden_state": np.asarray(result.hidden, np.float32)[None]}


def _input(pb, request, name: str, required: bool = False):
    tensor = pb.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise InputError(f"the request has no {name!r} input")
        return None
    return tensor.as_numpy()


def _answer(pb, outputs):
    if isinstance(outputs, Exception):
        return _error(pb, outputs)
    return pb.InferenceResponse([pb.Tensor(k, np.ascontiguousarray(v)) for k, v in outputs.items()])


def _parse_all(pb, requests, parse) -> list:
    """parse(pb, request) for each request; a request that fails to parse stands as its error."""
    parsed = []
    for request in requests:
        try:
            parsed.append(parse(pb, request))
        except W2VBertError as exc:
            parsed.append(exc)
    return parsed


def check_interpreter() -> None:
    """Under `w2vbert serve` the backend must run in the environment that started the server; another
    one (the system Python, found first on PATH) would fail later with a misleading import error."""
    wanted = os.environ.get(PREFIX_VARIABLE)
    if wanted and os.path.realpath(wanted) != os.path.realpath(sys.prefix):
        raise DependencyError(f"Triton's Python backend runs the Python at {sys.prefix}, but w2vbert serve was "
                              f"started from {wanted}: its bin/ must come first on PATH")


def _error(pb, exc: Exception):
    """A request's error; the client's own mistakes (InputError) as INVALID_ARG: HTTP 400, gRPC
    INVALID_ARGUMENT, as Triton answers a wrong datatype. Anything else stays INTERNAL (500)."""
    if isinstance(exc, InputError):
        return pb.InferenceResponse(error=pb.TritonError(str(exc), pb.TritonError.INVALID_ARG))
    return pb.InferenceResponse(error=pb.TritonError(str(exc)))
