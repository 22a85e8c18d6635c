"""What a TensorRT plan is valid for: the cache keys of plans and timing caches, and the GPU they name.

A plan runs only where it was built: the same ONNX files (graph and weights), TensorRT version, GPU
model and compute capability, precision and profile. Plain Python, shared by export and runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

from .errors import DependencyError
from .trt_profile import INSTALL_HINT


def files_digest(sha256_by_file: dict[str, str]) -> str:
    """One digest over every file of a variant (the graph and its external weights), order-free."""
    return hashlib.sha256(json.dumps(sorted(sha256_by_file.items())).encode()).hexdigest()


def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: str,
                     precision: str, profile: dict) -> str:
    """A plan is valid only for the exact ONNX (`files_digest` of the graph and its weights), TensorRT
    version, GPU model, precision and profile."""
    fields = {"onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name, "sm": compute_capability,
              "precision": precision, "profile": profile}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def timing_cache_name(trt_version: str, compute_capability: str) -> str:
    """TensorRT timing caches hold per-GPU-architecture tactic timings of one TensorRT version."""
    return f"timing-trt{trt_version}-sm{compute_capability}.cache"


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability) of the device CUDA calls 0, from nvidia-smi (no CUDA Python binding
    needed). nvidia-smi ignores CUDA_VISIBLE_DEVICES, so its first visible entry is asked for by id."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    command = ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    if visible:
        if visible.startswith("-") or visible.lower() == "nodevfiles":
            raise DependencyError(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU. "
                                  f"{INSTALL_HINT}")
        command.append(f"--id={visible}")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise DependencyError(f"no NVIDIA GPU visible (nvidia-smi: {exc}). {INSTALL_HINT}") from exc
    if not out.strip():
        raise DependencyError(f"nvidia-smi lists no GPU{' for CUDA_VISIBLE_DEVICES=' + visible if visible else ''}. "
                              f"{INSTALL_HINT}")
    name, _, capability = out.splitlines()[0].rpartition(",")
    return name.strip(), capability.strip()
