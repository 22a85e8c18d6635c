"""TensorRT optimization profiles: plain Python, shared by export and runtime (cache keys: trt_cache).

An engine accepts only shapes inside the profile it was built with, so the runtime checks
every call against the profile recorded in the manifest and says which bound was crossed
(TensorRT itself fails with a terse binding error).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import InputError
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
