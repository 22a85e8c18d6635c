"""onnxruntime execution providers and their options, per precision.

`cuda` runs the ONNX on ONNX Runtime's CUDA kernels (com.microsoft MultiHeadAttention
included); `tensorrt` hands the graph to ONNX Runtime's TensorRT provider, which builds
and caches engines itself (falling back to CUDA, then CPU, for what TensorRT rejects).
Both need onnxruntime-gpu (the `gpu` extra) and an NVIDIA GPU.
"""

from __future__ import annotations

from pathlib import Path

from .precisions import PRECISIONS

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
# what Session(provider=...), transcribe --provider and serve --provider take: onnxruntime's, OpenVINO's
# CPU plugin (runtime.openvino_runner) and "auto" (runtime.engine_choice); "trt-engine" (a prebuilt
# plan) is the API's alone
SESSION_PROVIDERS = (*PROVIDERS, "openvino", "auto")


def profile_shape_strings(profile: dict, feature_dim: int) -> dict[str, str]:
    """{"min"|"opt"|"max": "input_features:BxTxF,attention_mask:BxT"} for a manifest profile: the form of
    ORT's trt_profile_{min,opt,max}_shapes options (and of Triton's accelerator parameters, passed through)."""
    from .trt_profile import ShapeProfile

    shapes = ShapeProfile(**profile).shapes(feature_dim)
    return {which: ",".join(f"{name}:{'x'.join(map(str, dims[k]))}" for name, dims in shapes.items())
            for k, which in enumerate(("min", "opt", "max"))}


def provider_options(provider: str, precision: str, cache_dir: Path | None, profile: dict | None = None,
                     feature_dim: int = 160) -> list[tuple[str, dict]]:
    """[(provider name, options)] in priority order, for InferenceSession(providers=...)."""
    cpu = (PROVIDERS["cpu"], {})
    if provider == "cpu":
        return [cpu]
    # HEURISTIC: exhaustive cuDNN search re-runs for every new (batch, frames) shape. TF32 (on by
    # default on Ampere and later) rounds fp32 matmul inputs to 10 mantissa bits: fp32 parity needs it off.
    cuda = (PROVIDERS["cuda"], {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC",
                                "arena_extend_strategy": "kSameAsRequested", "use_tf32": "0"})
    if provider == "cuda":
        return [cuda, cpu]
    if provider != "tensorrt":
        raise ValueError(f"unknown provider {provider!r}")
    row = PRECISIONS.get(precision)  # fp16 kernels for fp16; int8-qdq's Q/DQ nodes: explicit quantization
    flags = dict(row.ort_trt) if row is not None else {"trt_fp16_enable": False, "trt_int8_enable": False}
    options = {
        "device_id": 0,
        **flags,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    if profile:  # one engine for the whole range instead of a rebuild per new shape
        for which, shapes in profile_shape_strings(profile, feature_dim).items():
            options[f"trt_profile_{which}_shapes"] = shapes
    return [(PROVIDERS["tensorrt"], options), cuda, cpu]
