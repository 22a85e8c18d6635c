"""TensorRT engine plans from the `tensorrt`-target ONNX, built through polygraphy's loaders.

    ONNX variant (standard ops, linted) -> NetworkFromOnnxPath(strongly_typed=True) -> CreateConfig
        (profile, TF32 off, timing cache) -> EngineBytesFromNetwork -> SaveBytes

Written against TensorRT 10.x / 11.x and polygraphy 0.49-0.53, and never run here (no GPU).
Each plan is built strongly typed from the ONNX variant the accuracy gate judged: `fp32` from
model.fp32.onnx, `fp16` from model.fp16.onnx (LayerNorm, softmax and reductions already fp32
in it), `int8` from model.int8-qdq.onnx (explicit Q/DQ). TensorRT 11 removed the weak-typing
flags (BuilderFlag.FP16 / INT8 / OBEY_PRECISION_CONSTRAINTS, ILayer.precision); only where
strong typing is missing (TensorRT < 9) and the flags exist is the old weakly typed build used,
chosen by the API present, not by a version string. Engines are cached under a key of (every
file of the variant: graph and weights, TensorRT version, GPU name and compute capability,
precision, profile); timing caches are kept per TensorRT version and compute capability.

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
from runtime.precisions import PRECISIONS, plan_precision
from runtime.trt_cache import engine_cache_key, files_digest, gpu_identity, timing_cache_name
from runtime.trt_profile import ShapeProfile

log = logging.getLogger("w2vbert")


def _keep_norms_fp32(network) -> None:
    """Pin normalization, softmax and reduction layers (and their outputs) to fp32."""
    import tensorrt as trt

    pinned = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    floating = {trt.float32, trt.float16}
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        # floating-point layers only: the attention_mask sums are integer reductions
        if layer.type in pinned and all(layer.get_output(k).dtype in floating for k in range(layer.num_outputs)):
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
            count += 1
    log.info("pinned %d normalization / softmax / reduce layers to fp32", count)


def engine_source(precision: str) -> str:
    """The ONNX variant an engine of `precision` is built from."""
    row = plan_precision(precision)
    if row is None:
        plans = [p.plan for p in PRECISIONS.values() if p.plan]
        raise ExportError(f"engine precision {precision!r} is unknown; expected one of {', '.join(plans)}")
    return row.name


def build_engine(onnx_path: Path, plan_path: Path, precision: str, profile: ShapeProfile, feature_dim: int,
                 files: list[Path], cache_dir: Path | None = None) -> dict:
    """Build (or take from the cache) the plan for `onnx_path`; returns its manifest entry.

    `files`: every file of the ONNX variant (the graph and its .data weights); the cache key hashes
    them all, so two checkpoints of one architecture never share a plan.
    """
    engine_source(precision)
    trt = require("tensorrt", "gpu", "building a TensorRT engine")
    require("polygraphy", "gpu", "building a TensorRT engine")
    gpu, capability = gpu_identity()
    digest = files_digest({p.name: file_sha256(p) for p in files})
    key = engine_cache_key(digest, trt.__version__, gpu, capability, precision, profile.to_dict())
    cache_dir = Path(cache_dir or Path.home() / ".cache" / "w2vbert-deploy" / "tensorrt")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / f"{key}.plan"
    if cached.is_file():
        log.info("engine cache hit %s", cached)
    else:
        _build(onnx_path, cached, precision, profile, feature_dim,
               cache_dir / timing_cache_name(trt.__version__, capability))
    shutil.copyfile(cached, plan_path)
    return {"file": plan_path.name, "files": [plan_path.name], "precision": precision,
            "onnx": onnx_path.name, "profile": profile.to_dict(), "tensorrt": trt.__version__,
            "gpu": gpu, "compute_capability": capability, "cache_key": key}


def build_mode(trt) -> str:
    """"strong" where TensorRT can build strongly typed networks (9.x and later; the only way in 11),
    "weak" where only the precision flags exist, chosen by the API present."""
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        return "strong"
    if hasattr(trt, "BuilderFlag") and hasattr(trt.BuilderFlag, "FP16"):
        return "weak"
    raise ExportError("this TensorRT has neither strongly typed networks nor the FP16 builder flag; "
                      "w2vbert-deploy was written against TensorRT 10.x / 11.x")


def _build(onnx_path: Path, plan: Path, precision: str, profile: ShapeProfile, feature_dim: int,
           timing_cache: Path) -> None:
    import tensorrt as trt
    from polygraphy.backend.common import SaveBytes
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile

    trt_profile = Profile()
    for name, (low, opt, high) in profile.shapes(feature_dim).items():
        trt_profile.add(name, min=low, opt=opt, max=high)
    options = {"profiles": [trt_profile],
               "load_timing_cache": str(timing_cache) if timing_cache.is_file() else None}
    if hasattr(trt, "BuilderFlag") and hasattr(trt.BuilderFlag, "TF32"):
        options["tf32"] = False  # fp32 parity: TF32 rounds matmul inputs to 10 mantissa bits
    if build_mode(trt) == "strong":
        network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)  # the ONNX's types, no flags
    else:
        network = _weakly_typed(NetworkFromOnnxPath(str(onnx_path)), precision, options)
    config = CreateConfig(**options)
    log.info("building the %s TensorRT engine for %s (minutes for the 600M model)", precision, onnx_path.name)
    partial = plan.with_suffix(".partial")  # a killed build never leaves a plan that looks complete
    try:
        # the serialized bytes straight to disk: deserializing to serialize again doubled peak memory
        SaveBytes(EngineBytesFromNetwork(network, config, save_timing_cache=str(timing_cache)), str(partial))()
    except Exception as exc:  # TensorRT / polygraphy raise their own untyped errors
        partial.unlink(missing_ok=True)
        raise ExportError(f"TensorRT could not build {onnx_path.name} ({precision}): {exc}. Debug layer by "
                          f"layer with: polygraphy run {onnx_path} --trt --onnxrt --onnx-outputs mark all "
                          "--trt-outputs mark all") from exc
    partial.replace(plan)


def _weakly_typed(network, precision: str, options: dict):
    """TensorRT without strong typing: precision flags, with floating-point norms pinned to fp32."""
    from polygraphy.backend.trt import PostprocessNetwork

    row = plan_precision(precision)
    half = row.plan_fp16
    options.update(fp16=half, int8=row.plan_int8, precision_constraints="obey" if half else None)
    return PostprocessNetwork(network, _keep_norms_fp32, name="KeepNormsFp32") if half else network
