"""TensorRT optimization profiles and engine cache keys: plain Python, shared by export and runtime.

An engine accepts only shapes inside the profile it was built with, so the runtime checks
every call against the profile recorded in the manifest and says which bound was crossed
(TensorRT itself fails with a terse binding error).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from dataclasses import asdict, dataclass

from .errors import DependencyError, InputError
from .precisions import PRECISIONS

FRAMES_PER_SECOND = 50  # stacked 160-dim frames: 10 ms hop x stride 2
INSTALL_HINT = ("TensorRT engines need an NVIDIA GPU with its driver, and pip install 'w2vbert-deploy[gpu]' "
                "(tensorrt, polygraphy, onnxruntime-gpu) instead of the cpu extra")


@dataclass(frozen=True)
class ShapeProfile:
    """min / opt / max batch and frames of one optimization profile."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    min_frames: int = 50
    opt_frames: int = 500
    max_frames: int = 1500

    def __post_init__(self):
        for axis in ("batch", "frames"):
            low, opt, high = (getattr(self, f"{k}_{axis}") for k in ("min", "opt", "max"))
            if not 1 <= low <= opt <= high:
                raise InputError(f"profile {axis}: need 1 <= min <= opt <= max, got {low}, {opt}, {high}")

    @classmethod
    def from_seconds(cls, min_seconds: float = 1.0, opt_seconds: float = 10.0, max_seconds: float = 30.0,
                     opt_batch: int = 1, max_batch: int = 8, model_min_frames: int = 1) -> "ShapeProfile":
        """Durations of audio -> frames (50 per second), never below what the model needs."""
        frames = [max(model_min_frames, math.ceil(s * FRAMES_PER_SECOND)) for s in
                  (min_seconds, opt_seconds, max_seconds)]
        return cls(1, opt_batch, max_batch, *frames)

    def shapes(self, feature_dim: int) -> dict[str, list[list[int]]]:
        """{input name: [min shape, opt shape, max shape]}, as the manifest records it."""
        rows = [(self.min_batch, self.min_frames), (self.opt_batch, self.opt_frames),
                (self.max_batch, self.max_frames)]
        return {"input_features": [[b, t, feature_dim] for b, t in rows],
                "attention_mask": [[b, t] for b, t in rows]}

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def check_in_profile(batch: int, frames: int, profile: dict) -> None:
    """Raise InputError unless (batch, frames) lies inside a manifest profile ({min_batch: ..})."""
    for axis, value in (("batch", batch), ("frames", frames)):
        low, high = profile[f"min_{axis}"], profile[f"max_{axis}"]
        if not low <= value <= high:
            raise InputError(f"{axis} {value} is outside this TensorRT engine's profile [{low}, {high}]; "
                             f"split the input, or rebuild the engine with a wider profile "
                             f"(w2vbert export --engine --{'max-batch' if axis == 'batch' else 'max-seconds'})")


def engine_profile(manifest_data: dict, variant: str) -> dict | None:
    """The optimization profile of the plan built from ONNX `variant` (an int8-qdq variant's plan is "int8";
    manifest["engines"] is keyed by plan)."""
    row = PRECISIONS.get(variant)
    plan = row.plan if row is not None and row.plan else variant
    return manifest_data.get("engines", {}).get(plan, {}).get("profile")


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
