"""Export step (target tensorrt, --engine): one TensorRT plan per engine precision, manifest `engines`."""

from __future__ import annotations

from pathlib import Path

from runtime.errors import ExportError
from runtime.trt_profile import ShapeProfile

from ..targets.tensorrt import build_engine, engine_source


def add_engines(staging: Path, manifest: dict, precisions, profile: ShapeProfile, cache_dir=None) -> None:
    """Build a plan per engine precision from the artifact's ONNX variants."""
    feature_dim = manifest["config"]["feature_projection_input_dim"]
    for precision in precisions:
        source = engine_source(precision)
        if source not in manifest["variants"]:
            raise ExportError(f"a {precision} engine is built from the {source} variant; add it to --precision")
        variant = manifest["variants"][source]
        onnx_path = staging / variant["file"]
        entry = build_engine(onnx_path, staging / f"model.{precision}.plan", precision, profile, feature_dim,
                             [staging / f for f in variant["files"]], cache_dir)
        manifest.setdefault("engines", {})[precision] = entry
