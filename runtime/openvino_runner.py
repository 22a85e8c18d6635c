"""Run an artifact's ONNX graph on OpenVINO's CPU plugin (``Session(provider="openvino")``).

OpenVINO compiles our graphs as they are: the standard operators and the com.microsoft ones the
default target writes (MultiHeadAttention, SkipLayerNormalization), with dynamic batch and frames.
Its CPU plugin runs an f32 graph in bf16 on CPUs with bf16 units unless told otherwise, so the
inference precision is always set from the precision's row (fp32 stays f32 and keeps fp32 parity)
and read back from the compiled model, which says what it really runs.

Compiling the 600M graph takes seconds; OpenVINO's model cache (``CACHE_DIR``) keeps the compiled
blob in one folder per variant's bytes, hint and CPU, so the next load imports it instead.

A CompiledModel is shared, an InferRequest runs one inference at a time: one request per thread.
"""

from __future__ import annotations

import hashlib
import platform
import threading
from pathlib import Path

import numpy as np

from .engine_choice import cpuinfo_field
from .errors import ArtifactError, DependencyError, InputError, require

EXTRA = "openvino"
DEFAULT_CACHE = Path.home() / ".cache" / "w2vbert-deploy" / "openvino"


def openvino():
    return require("openvino", EXTRA, "OpenVINO (provider='openvino', the bf16 precision)")


def cpu_identity() -> str:
    """The CPU a compiled blob is valid for: its model name and instruction-set flags (Linux), else
    what platform says. OpenVINO picks kernels per ISA at compile time."""
    known = "\n".join(filter(None, (cpuinfo_field("model name"), cpuinfo_field("flags"))))
    return known or platform.processor() or platform.machine()


def cache_folder(root: Path, variant_digest: str, hint: str | None) -> Path:
    """One folder per variant's bytes, inference precision and CPU (and OpenVINO version)."""
    ov = openvino()
    key = hashlib.sha256(f"{variant_digest}|{hint}|{cpu_identity()}|{ov.__version__}".encode()).hexdigest()
    return root / key[:24]


def has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin has bf16 kernels here (AVX512_BF16 or AMX); elsewhere it would
    run a bf16 request in f32."""
    return "BF16" in openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVINORunner:
    """A compiled model on the CPU and one infer request per calling thread."""

    def __init__(self, model_path: Path, hint: str | None, threads: int | None, cache_dir: Path | None):
        ov = openvino()
        if hint == "bf16" and not has_bf16():
            raise DependencyError("bf16 needs a CPU with bf16 units (AVX512_BF16 or AMX); OpenVINO reports "
                                  f"{', '.join(ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))} "
                                  "here and would run it in f32: load 'fp32' or 'int8-qdq' instead")
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if hint is not None:
            config["INFERENCE_PRECISION_HINT"] = hint
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        try:
            self._compiled = ov.Core().compile_model(str(model_path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError for unreadable files and unsupported ops alike
            raise ArtifactError(f"OpenVINO cannot compile {model_path}: {exc}") from exc
        self.path = Path(model_path)
        self.version = ov.__version__
        self.inference_precision = _type_name(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.input_names = [i.any_name for i in self._compiled.inputs]
        self.output_names = [o.any_name for o in self._compiled.outputs]
        self._local = threading.local()
        self._closed = False

    def describe(self) -> str:
        return f"OpenVINO {self.version.split('-')[0]} CPU, {self.inference_precision} inference precision"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise ArtifactError("this OpenVINO model was closed (Session.close); load the Session again")
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        try:
            results = request.infer(feeds)
        except Exception as exc:  # shapes and types are checked before this; what is left is OpenVINO's
            shapes = {k: v.shape for k, v in feeds.items()}
            raise InputError(f"OpenVINO failed on input of shapes {shapes}: {exc}") from exc
        return {name: np.asarray(results[output]) for name, output in zip(self.output_names,
                                                                          self._compiled.outputs)}

    def close(self) -> None:
        self._closed = True
        self._local = threading.local()


def metadata_map(model_path: Path) -> dict[str, str]:
    """The ONNX file's metadata_props as OpenVINO reads them (rt_info["framework"])."""
    ov = openvino()
    try:
        info = ov.Core().read_model(str(model_path)).get_rt_info()
    except Exception as exc:
        raise ArtifactError(f"OpenVINO cannot read {model_path}: {exc}") from exc
    framework = info["framework"] if "framework" in info else {}
    framework = framework.astype(dict) if hasattr(framework, "astype") else framework
    return {key: value.astype(str) if hasattr(value, "astype") else str(value) for key, value in framework.items()}


def _type_name(value) -> str:
    """OpenVINO's element type (Type.bf16, 'bfloat16', ...) -> our name ('bf16', 'fp32', 'fp16')."""
    text = str(getattr(value, "get_type_name", lambda: value)()).lower()
    return {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "f16": "fp16",
            "float16": "fp16"}.get(text.replace("<type: '", "").rstrip("'>"), text)
