"""``Session``: load an artifact (or a bare .onnx), validate input, run with onnxruntime.

One Session may be shared by threads: onnxruntime's ``InferenceSession.run`` is
thread-safe and the validation here keeps no state.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import seal
from .engine_choice import auto_provider
from .errors import ArtifactError, DependencyError, InputError, require
from .features import HOP_LENGTH
from .inputs import check_attention_memory, check_features, check_mask, check_waveform, is_whole
from .manifest import Manifest, check_matches_model, load_manifest
from .ort_session import ort_session
from .precisions import PRECISIONS, engines_of, variant_row
from .providers import PROVIDERS, SESSION_PROVIDERS, provider_options
from .shapes import min_frames, min_samples
from .trt_cache import files_digest
from .trt_profile import engine_profile

log = logging.getLogger("w2vbert")

METADATA_PREFIX = "w2vbert."


class Session:
    """Run an exported model.

    Args:
        path: artifact directory written by ``w2vbert export``, or a bare ``.onnx``.
        precision: which variant of the artifact to load ("fp32", ...).
        provider: "cpu", "cuda" or "tensorrt" (onnxruntime execution providers), "openvino" (OpenVINO's
            CPU plugin, the `openvino` extra: fp32, bf16 and int8-qdq), "auto" (the one measured fastest
            for `precision` on this CPU kind: runtime.engine_choice; `self.provider` says which), or
            "trt-engine" (the artifact's TensorRT plan for `precision`, built by ``export --engine``).
        threads: intra-op threads; None lets onnxruntime use every core.
        verify: check sha256 of the model files against the manifest (slow for 2 GB models).
        spin: let onnxruntime's threads spin-wait between calls (lowest latency); turn off when
            other processes share the cores.
        cache_dir: where the tensorrt provider keeps engines and timing caches (default
            ~/.cache/w2vbert-deploy/ort-tensorrt), and openvino its compiled models (.../openvino).
        max_attention_bytes: refuse a call whose attention scores alone would exceed this
            (they grow with frames^2); the default 4 GiB allows ~160 s per call on the 600M model.
        memory_arena: onnxruntime's CPU arena (fastest). Its footprint creeps up over many calls
            of varying shapes; False returns memory after every call (flat RSS, slower calls).
    """

    def __init__(self, path: str | Path, precision: str = "fp32", provider: str = "cpu",
                 threads: int | None = None, verify: bool = True, spin: bool = True,
                 cache_dir: str | Path | None = None, max_attention_bytes: int = 4 * 2 ** 30,
                 memory_arena: bool = True):
        path = Path(os.path.abspath(path))  # a later os.chdir must not change what it reads
        if provider == "auto":
            provider = auto_provider(precision)
        self.provider = provider
        self._engine = None
        self.max_attention_bytes = int(max_attention_bytes)
        _check_threads(threads)
        self._verified = verify
        self.manifest: Manifest | None = None
        self.precision = precision
        if "onnxruntime" not in engines_of(precision) and provider != "openvino":
            raise InputError(f"precision {precision!r} runs on OpenVINO only: Session(..., provider='openvino'); "
                             f"provider {provider!r} has no {precision} kernels on this path")
        if provider == "trt-engine":
            self._from_engine(path, precision, verify)
        elif provider == "openvino":
            self._from_openvino(path, precision, threads, verify, cache_dir)
        else:
            model_path = self._from_artifact(path, precision, provider, verify) if path.is_dir() else \
                self._from_onnx(path, verify)
            self._start_onnxruntime(model_path, provider, threads, spin, cache_dir, memory_arena)
        self._set_input_limits()

    def _from_artifact(self, path: Path, precision: str, provider: str, verify: bool) -> Path:
        """An artifact directory: the file of the variant's form `provider` loads, its files verified."""
        self.manifest = load_manifest(path)
        variant = self.manifest.form(precision, provider)
        if verify:
            self.manifest.verify(variant["files"])
        self._read_manifest_model()
        return self.manifest.safe_path(variant["file"])

    def _from_onnx(self, path: Path, verify: bool) -> Path:
        """A bare .onnx written by `w2vbert export`: no manifest, the sha256 it carries stands in."""
        if not path.is_file():
            raise ArtifactError(f"{path} does not exist; expected an artifact directory or a .onnx file")
        if verify:
            seal.check(path)
        self.head, self.config, self.preprocessor = _read_metadata(path)
        return path

    def _from_engine(self, path: Path, precision: str, verify: bool) -> None:
        """The artifact's TensorRT plan of `precision` (built by ``export --engine``)."""
        from .trt_engine import EngineRunner

        if not path.is_dir():
            raise ArtifactError(f"provider 'trt-engine' needs an artifact directory, got {path}")
        self.manifest = load_manifest(path)
        engines = self.manifest.data.get("engines", {})
        if precision not in engines:
            raise ArtifactError(f"artifact {path} has no {precision!r} TensorRT engine (it has: "
                                f"{', '.join(sorted(engines)) or 'none'}); build one with "
                                "w2vbert export --target tensorrt --engine")
        entry = engines[precision]
        if verify:
            self.manifest.verify(entry["files"])
        self._read_manifest_model()
        self.path = self.manifest.safe_path(entry["file"])
        self._engine = EngineRunner(self.path, entry)
        self.input_names = ["input_features", "attention_mask"]
        self.output_names = [o["name"] for o in self.manifest.data["outputs"]]
        self.with_frontend = False

    def _from_openvino(self, path: Path, precision: str, threads, verify: bool, cache_dir) -> None:
        """The variant's graph compiled by OpenVINO, at the inference precision its row names."""
        from .openvino_runner import DEFAULT_CACHE, OpenVINORunner, cache_folder, metadata_map

        row = variant_row(precision)
        if row is None or not row.openvino:
            runs = [name for name, p in PRECISIONS.items() if p.openvino]
            raise InputError(f"precision {precision!r} does not run on OpenVINO; it runs {', '.join(runs)}")
        model_path = self._from_artifact(path, precision, "openvino", verify) if path.is_dir() else \
            self._from_onnx(path, verify)
        if self.manifest is not None and not verify:  # verified files are the manifest's own
            check_matches_model(self.manifest, metadata_map(model_path), model_path.name)
        digest = artifact_cache_id(self.manifest, precision, "openvino", model_path)
        root = Path(cache_dir) if cache_dir else DEFAULT_CACHE
        self._engine = OpenVINORunner(model_path, row.openvino_hint, threads,
                                      cache_folder(root, digest, row.openvino_hint))
        self.path = model_path
        self.input_names, self.output_names = self._engine.input_names, self._engine.output_names
        self.with_frontend = self.input_names == ["waveform", "waveform_lengths"]

    def _start_onnxruntime(self, model_path: Path, provider: str, threads, spin: bool, cache_dir,
                           memory_arena: bool) -> None:
        """The onnxruntime session of `model_path` on `provider`, checked against the manifest."""
        self.path = model_path
        cache = None
        if provider == "tensorrt":  # the only provider with an engine cache
            # onnxruntime's TensorRT engine id hashes the graph's names, not its weights: one folder per
            # artifact, or two checkpoints of one architecture would share an engine
            cache = (Path(cache_dir) if cache_dir else Path.home() / ".cache" / "w2vbert-deploy" / "ort-tensorrt") \
                / artifact_cache_id(self.manifest, self.precision, provider, model_path)
        profile = engine_profile(self.manifest.data, self.precision) if self.manifest else None
        providers = None
        if provider in PROVIDERS:
            providers = provider_options(provider, self.precision, cache, profile,
                                         int(self.config["feature_projection_input_dim"]))
        self._session = _make_session(model_path, provider, threads, spin, providers, memory_arena)
        if self.manifest is not None:
            check_matches_model(self.manifest, _metadata_map(self._session, model_path), model_path.name)
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.with_frontend = self.input_names == ["waveform", "waveform_lengths"]
        if self.input_names != ["input_features", "attention_mask"] and not self.with_frontend:
            raise ArtifactError(f"{model_path} has inputs {self.input_names}; expected "
                                "['input_features', 'attention_mask'] or ['waveform', 'waveform_lengths']")

    def _read_manifest_model(self) -> None:
        self.head, self.config = self.manifest.head, self.manifest.config
        self.preprocessor = self.manifest.data["preprocessor"]

    def _set_input_limits(self) -> None:
        self.feature_dim = int(self.config["feature_projection_input_dim"])
        self.min_frames = min_frames(self.config, self.head)

    def run(self, input_features, attention_mask=None) -> dict[str, np.ndarray]:
        """input_features float [B, T, 160], attention_mask int/bool [B, T] or None -> outputs by name."""
        if self.with_frontend:
            raise InputError("this variant takes raw audio: call run_frontend(waveform, lengths), "
                             "or load the 'fp32' variant for features")
        x = check_features(input_features, self.feature_dim)
        mask = check_mask(attention_mask, x.shape[0], x.shape[1], self.min_frames)
        check_attention_memory(x.shape[0], x.shape[1], int(self.config["num_attention_heads"]),
                               self.max_attention_bytes)
        return self._run({"input_features": x, "attention_mask": mask}, x.shape)

    def run_frontend(self, waveform, lengths=None) -> dict[str, np.ndarray]:
        """Raw-audio variant: waveform float [B, samples] (16 kHz, right-padded), lengths int [B]."""
        if not self.with_frontend:
            raise InputError("this variant takes features; export with --with-frontend and load "
                             "precision='fp32-frontend' for raw audio")
        shortest = min_samples(self.min_frames, int(self.preprocessor.get("stride", 2)))
        wave, lengths = check_waveform(waveform, lengths, shortest)
        stacked = HOP_LENGTH * int(self.preprocessor.get("stride", 2))  # samples per model frame
        check_attention_memory(wave.shape[0], wave.shape[1] // stacked + 1, int(self.config["num_attention_heads"]),
                               self.max_attention_bytes)
        return self._run({"waveform": wave, "waveform_lengths": lengths}, wave.shape)

    def _run(self, feeds: dict, shape) -> dict[str, np.ndarray]:
        if self._engine is not None:
            outputs = self._engine.run(feeds)
        else:
            try:
                values = self._session.run(None, feeds)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise InputError(f"onnxruntime failed on input of shape {shape}: {exc}") from exc
            outputs = dict(zip(self.output_names, values))
        for name, value in outputs.items():
            if not np.isfinite(value).all():
                if not self._verified:
                    raise ArtifactError(f"the model produced non-finite output (NaN/Inf in {name!r}) for finite "
                                        f"input of shape {shape}: the artifact may be damaged; it was loaded with "
                                        "verify=False, load it with verify=True to check its files")
                raise InputError(f"the model produced non-finite output (NaN/Inf in {name!r}) for finite input "
                                 f"of shape {shape} (its files are verified): the input is outside what this "
                                 "model handles")
        return outputs

    __call__ = run

    @property
    def engine_limits(self) -> tuple[int, int] | None:
        """(max batch, max frames) a TensorRT plan accepts; None when any shape runs."""
        profile = getattr(self._engine, "profile", None)
        if profile is None:
            return None
        return int(profile["max_batch"]), int(profile["max_frames"])

    @property
    def engine(self) -> str:
        """What runs this Session's calls (for logs and `w2vbert inspect`)."""
        if hasattr(self._engine, "describe"):
            return self._engine.describe()
        if self._engine is not None:
            return f"TensorRT plan {self.path.name}"
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} {self._session.get_providers()[0]}"

    def close(self) -> None:
        """Release the onnxruntime session or TensorRT context now (they are otherwise freed with the Session)."""
        if self._engine is not None:
            self._engine.close()
        self._session = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ audio in
    def audio_runner(self, **options):
        """An :class:`runtime.audio_runner.AudioRunner` over this session (front end + decoding)."""
        from .audio_runner import AudioRunner

        return AudioRunner(self, **options)

    def infer(self, audio, sampling_rate: int | None = None, timestamps: bool = False, **options) -> list:
        """Waveforms (16 kHz float arrays) or sound-file paths -> one Result per utterance."""
        pipe = self.audio_runner(**options)
        waves = _waves(audio, pipe.features, sampling_rate)
        return pipe(waves, timestamps=timestamps)

    def transcribe(self, audio, sampling_rate: int | None = None, timestamps: bool = False, **options) -> list:
        """CTC heads: waveforms or sound-file paths -> text per utterance (long audio is chunked).

        With ``timestamps=True`` each utterance is ``{"text": str, "words": [{"word", "start", "end"}]}``,
        times in seconds from the start of the recording (chunk seams included).
        """
        if self.head != "CTC":
            raise InputError(f"transcribe needs a CTC head; this model's head is {self.head}")
        results = self.infer(audio, sampling_rate, timestamps=timestamps, **options)
        if timestamps:
            return [{"text": r.text, "words": r.words} for r in results]
        return [r.text for r in results]


def _waves(audio, checker, sampling_rate: int | None) -> list[np.ndarray]:
    """Paths or arrays -> checked 1-D float32 waves at `checker.sampling_rate` (a FeatureExtractor)."""
    from .audio import checked_at, load_audio
    from .features import as_utterances

    items = [audio] if isinstance(audio, (str, Path)) else as_utterances(audio)
    # arrays are checked before chunking: rank, dtype, length
    return [load_audio(item, checker.sampling_rate) if isinstance(item, (str, Path))
            else checked_at(checker, item, i, sampling_rate) for i, item in enumerate(items)]


def artifact_cache_id(manifest: Manifest | None, precision: str, provider: str, model_path: Path) -> str:
    """A folder name for engine caches that changes with the variant's bytes (graph and weights)."""
    if manifest is not None and (provider in PROVIDERS or provider == "openvino"):
        files = manifest.form(precision, provider)["files"]
        digest = files_digest({f: manifest.data["files"][f]["sha256"] for f in files})
    else:  # a bare .onnx: its place, size and time stand in (its sha256 would read it twice)
        stat = model_path.stat()
        digest = files_digest({str(model_path.resolve()): f"{stat.st_size}-{stat.st_mtime_ns}"})
    return f"{precision}-{digest[:16]}"


def _check_threads(threads) -> None:
    if threads is not None and (not is_whole(threads) or threads < 1):
        raise InputError(f"threads must be >= 1 and a whole number (or None: every core), got {threads!r}")


def _metadata_map(session, path: Path) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except (UnicodeDecodeError, RuntimeError) as exc:  # damaged metadata bytes
        raise ArtifactError(f"{path}: its metadata is unreadable ({type(exc).__name__}: {exc}); "
                            "the file is damaged") from exc


def _read_metadata(path: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    try:
        session = ort_session(path)
    except DependencyError:
        raise
    except Exception as exc:
        raise ArtifactError(f"{path} cannot be loaded by onnxruntime: {exc}") from exc
    props = _metadata_map(session, path)
    try:
        return (props[METADATA_PREFIX + "head"], json.loads(props[METADATA_PREFIX + "config"]),
                json.loads(props[METADATA_PREFIX + "preprocessor"]))
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{path} lacks w2vbert metadata ({exc}); was it written by `w2vbert export`?") from exc


def _make_session(model_path: Path, provider: str, threads: int | None, spin: bool = True,
                  providers: list | None = None, memory_arena: bool = True):
    if provider not in PROVIDERS:
        raise InputError(f"provider {provider!r} is unknown; expected one of {', '.join(SESSION_PROVIDERS)}, "
                         "trt-engine")
    ort = require("onnxruntime", "cpu", "running an exported model")
    name = PROVIDERS[provider]
    if name not in ort.get_available_providers():
        raise DependencyError(f"onnxruntime here offers {ort.get_available_providers()}, not {name}; "
                              "for GPUs install 'w2vbert-deploy[gpu]' (without the cpu extra) on a CUDA machine")
    try:
        session = ort_session(model_path, threads, spin, memory_arena, providers or [name])
    except Exception as exc:
        raise ArtifactError(f"onnxruntime cannot load {model_path}: {exc}") from exc
    check_provider_used(session, name)
    return session


def check_provider_used(session, name: str) -> None:
    """onnxruntime falls back to the next provider silently when one fails to start (a missing CUDA or
    TensorRT library, an unsupported GPU): refuse to run on something else than was asked for."""
    used = session.get_providers()
    if not used or used[0] != name:
        raise DependencyError(f"onnxruntime did not start {name} (it runs on {', '.join(used) or 'nothing'}): "
                              "its CUDA / TensorRT libraries or the GPU driver are missing or do not match "
                              "onnxruntime-gpu's build; set ORT_LOGGING_LEVEL=0 (or run with -v) to see why")
