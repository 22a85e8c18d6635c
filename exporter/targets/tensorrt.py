"""TensorRT engine plans from the `tensorrt`-target ONNX, built through polygraphy's loaders.

    ONNX (standard ops, linted) -> NetworkFromOnnxPath -> [keep norms fp32] -> CreateConfig
        (profile, precision flags, timing cache) -> EngineFromNetwork -> SaveEngine

Precisions: `fp32` (TF32 off, so parity holds at fp32 tolerances), `fp16` (fp16 kernels
with LayerNorm, Softmax and reductions pinned to fp32 and obeyed: the known fp16 overflow
points), `int8` (explicit quantization from the int8-qdq variant's Q/DQ nodes, fp16
allowed elsewhere; no implicit calibrator). Engines are cached under a key of (ONNX
sha256, TensorRT version, GPU name and compute capability, precision, profile), and one
timing cache file is reused by every build.

Nothing here can run without an NVIDIA GPU and TensorRT; the CPU test suite covers the
profile, cache-key and error paths, and `tests/exporter/test_tensorrt.py::test_build_*`
runs the build where a GPU exists (marked `tensorrt`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from runtime.errors import ExportError, require
from runtime.manifest import file_sha256
from runtime.trt_profile import ShapeProfile, engine_cache_key, gpu_identity

from ..plan import ENGINE_SOURCES

log = logging.getLogger("w2vbert")


def _keep_norms_fp32(network) -> None:
    """Pin normalization, softmax and reduction layers (and their outputs) to fp32."""
    import tensorrt as trt

    pinned = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in pinned:
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
            count += 1
    log.info("pinned %d normalization / softmax / reduce layers to fp32", count)


def engine_source(precision: str) -> str:
    """The ONNX variant an engine of `precision` is built from."""
    if precision not in ENGINE_SOURCES:
        raise ExportError(f"engine precision {precision!r} is unknown; expected one of {', '.join(ENGINE_SOURCES)}")
    return ENGINE_SOURCES[precision]


def build_engine(onnx_path: Path, plan_path: Path, precision: str, profile: ShapeProfile, feature_dim: int,
                 cache_dir: Path | None = None) -> dict:
    """Build (or take from the cache) the plan for `onnx_path`; returns its manifest entry."""
    engine_source(precision)
    trt = require("tensorrt", "gpu", "building a TensorRT engine")
    require("polygraphy", "gpu", "building a TensorRT engine")
    gpu, capability = gpu_identity()
    key = engine_cache_key(file_sha256(onnx_path), trt.__version__, gpu, capability, precision,
                           profile.to_dict())
    cache_dir = Path(cache_dir or Path.home() / ".cache" / "w2vbert-deploy" / "tensorrt")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / f"{key}.plan"
    if cached.is_file():
        log.info("engine cache hit %s", cached)
    else:
        _build(onnx_path, cached, precision, profile, feature_dim, cache_dir / "timing.cache")
    shutil.copyfile(cached, plan_path)
    return {"file": plan_path.name, "files": [plan_path.name], "precision": precision,
            "onnx": onnx_path.name, "profile": profile.to_dict(), "tensorrt": trt.__version__,
            "gpu": gpu, "compute_capability": capability, "cache_key": key}


def _build(onnx_path: Path, plan: Path, precision: str, profile: ShapeProfile, feature_dim: int,
           timing_cache: Path) -> None:
    from polygraphy.backend.trt import (CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, PostprocessNetwork,
                                        Profile, SaveEngine)

    trt_profile = Profile()
    for name, (low, opt, high) in profile.shapes(feature_dim).items():
        trt_profile.add(name, min=low, opt=opt, max=high)
    network = NetworkFromOnnxPath(str(onnx_path))
    half = precision in ("fp16", "int8")
    if half:
        network = PostprocessNetwork(network, _keep_norms_fp32, name="KeepNormsFp32")
    config = CreateConfig(tf32=False, fp16=half, int8=precision == "int8", profiles=[trt_profile],
                          precision_constraints="obey" if half else None,
                          load_timing_cache=str(timing_cache) if timing_cache.is_file() else None)
    log.info("building the %s TensorRT engine for %s (minutes for the 600M model)", precision, onnx_path.name)
    partial = plan.with_suffix(".partial")  # a killed build never leaves a plan that looks complete
    try:
        SaveEngine(EngineFromNetwork(network, config, save_timing_cache=str(timing_cache)), str(partial))()
    except Exception as exc:  # TensorRT / polygraphy raise their own untyped errors
        partial.unlink(missing_ok=True)
        raise ExportError(f"TensorRT could not build {onnx_path.name} ({precision}): {exc}. Debug layer by "
                          f"layer with: polygraphy run {onnx_path} --trt --onnxrt --onnx-outputs mark all "
                          "--trt-outputs mark all") from exc
    partial.replace(plan)
