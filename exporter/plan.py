"""What an export will do, decided and checked before any slow work (no torch).

The CLI reads its choices from here (targets, precisions, calibrators, heads); `export`
builds one :class:`ExportPlan`, which resolves the source, reads its config, picks the
head and checks every option once, so a bad option fails in milliseconds, not after
tracing a 600M model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import ExportError
from runtime.shapes import min_frames

from .model.config import W2VBertConfig
from .model.registry import HEAD_NAMES  # noqa: F401 - the CLI's --head choices
from .model.sources import Source, resolve_source

TARGETS = ("ort", "tensorrt")
DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization
# precision -> targets it can be built for (int8 dynamic and int4 use ORT-only operators).
PRECISION_TARGETS = {"fp32": ("ort", "tensorrt"), "fp16": ("ort", "tensorrt"), "int8": ("ort",),
                     "int8-qdq": ("ort", "tensorrt"), "int4": ("ort",)}
PRECISIONS = tuple(PRECISION_TARGETS)
CALIBRATORS = ("percentile", "entropy", "minmax")
# ONNX precision -> (TensorRT plan precision, the ONNX variant the plan is built from). An fp16 plan
# is built from the fp32 ONNX with TensorRT's fp16 flag; the int8 plan from int8-qdq's Q/DQ nodes.
TENSORRT_PLANS = {"fp32": ("fp32", "fp32"), "fp16": ("fp16", "fp32"), "int8-qdq": ("int8", "int8-qdq")}
ENGINE_SOURCES = {plan: onnx for plan, onnx in TENSORRT_PLANS.values()}  # plan precision -> ONNX variant


def check_precision(precision: str, target: str) -> None:
    if precision not in PRECISION_TARGETS:
        raise ExportError(f"precision {precision!r} is unknown; expected one of {', '.join(PRECISION_TARGETS)}")
    if target not in PRECISION_TARGETS[precision]:
        hint = " (use int8-qdq: explicit Q/DQ that TensorRT builds)" if precision == "int8" else ""
        raise ExportError(f"precision {precision} cannot target {target}: it needs onnxruntime-only "
                          f"operators{hint}")


@dataclass
class ExportPlan:
    source: Source
    config: W2VBertConfig
    head: str
    out: Path
    opset: int = DEFAULT_OPSET
    precisions: tuple[str, ...] = ("fp32",)
    target: str = "ort"
    force: bool = False
    with_frontend: bool = False
    engine: dict | None = None  # runtime.trt_profile.ShapeProfile.from_seconds keyword arguments
    engine_cache: Path | None = None
    profile: object = field(default=None, repr=False)  # the engines' ShapeProfile, when engine is given

    @property
    def min_frames(self) -> int:
        return min_frames(self.config.to_dict(), self.head)

    @property
    def engine_precisions(self) -> list[str]:
        return [TENSORRT_PLANS[p][0] for p in self.precisions if p in TENSORRT_PLANS]


def make_plan(source=None, out="w2vbert-artifact", head: str | None = None, opset: int = DEFAULT_OPSET,
              precisions=("fp32",), force: bool = False, with_frontend: bool = False, target: str = "ort",
              engine: dict | None = None, engine_cache=None) -> ExportPlan:
    """Check every option, resolve the source and read its config; raise before any slow work."""
    if target not in TARGETS:
        raise ExportError(f"target {target!r} is unknown; expected one of {', '.join(TARGETS)}")
    for precision in precisions:
        check_precision(precision, target)
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; LayerNormalization needs opset >= {MIN_OPSET}")
    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f"output {out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {out} exists and is not a directory")
    resolved = resolve_source(source)
    config = resolved.config()
    head = head or config.default_head
    config.check_head(head)
    plan = ExportPlan(resolved, config, head, out, opset, tuple(precisions), target, force, with_frontend,
                      engine, Path(engine_cache) if engine_cache else None)
    if engine is not None:
        plan.profile = _engine_profile(plan)
    return plan


def _engine_profile(plan: ExportPlan):
    """The engines' profile; no TensorRT or no GPU fails here, before the slow part."""
    from runtime.errors import require
    from runtime.trt_profile import INSTALL_HINT, ShapeProfile, gpu_identity

    if plan.target != "tensorrt":
        raise ExportError("--engine needs --target tensorrt (engines are built from standard-op ONNX)")
    profile = ShapeProfile.from_seconds(**plan.engine, model_min_frames=plan.min_frames)
    require("tensorrt", "gpu", f"building TensorRT engines ({INSTALL_HINT})")
    gpu_identity()
    return profile
