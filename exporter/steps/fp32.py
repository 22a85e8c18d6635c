"""Export step: the fp32 variant, traced, simplified, checked and compared with the reference.

    trace (target's form) -> staging/.raw -> one file (+ one .data above 2 GB) with metadata
      -> onnxsim -> onnx.checker (full) -> [TensorRT operator lint] -> parity vs PyTorch
      -> fused-op counts and the fusion check -> manifest["variants"]["fp32"]

Every other variant is made from this file (or, for the raw-audio one, traced the same way).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..artifact import onnx_metadata, variant_entry
from ..parity.reference import PARITY_FRAMES, onnx_parity, parity_record
from ..passes.op_counts import fused_op_counts
from ..passes.simplify import simplify
from ..passes.trt_lint import check as trt_check
from ..trace.onnx_io import check_onnx, consolidate
from ..trace.prepare import check_fused
from ..trace.trace import trace_features

log = logging.getLogger("w2vbert")

NAME = "model.fp32.onnx"


def build_variant(staging: Path, name: str, tracer, metadata: dict[str, str]) -> list[str]:
    """Trace into staging/.raw, consolidate to staging/name, simplify, run onnx.checker; returns file names."""
    raw_dir = staging / ".raw"  # inside staging: an interrupted export leaves nothing elsewhere
    raw_dir.mkdir()
    tracer(raw_dir / "model.onnx")
    files = consolidate(raw_dir / "model.onnx", staging / name, metadata)
    shutil.rmtree(raw_dir)
    simplify(staging / name, files)
    log.info("checking %s with onnx.checker (full check)", name)
    check_onnx(staging / name)
    return files


def add_fp32(model, staging: Path, manifest: dict, opset: int, target: str) -> dict:
    """Write model.fp32.onnx for `target` and record it; returns its manifest entry."""
    log.info("tracing %s head to ONNX (opset %d, target %s)", model.head, opset, target)
    files = build_variant(staging, NAME, lambda p: trace_features(model, p, opset, manifest["min_frames"], target),
                          onnx_metadata(manifest, target=target))
    if target == "tensorrt":
        log.info("checking every node against the TensorRT ONNX parser's operator list")
        trt_check(staging / NAME)
    log.info("parity vs the PyTorch reference at %s frames (batch 3, padded)", list(PARITY_FRAMES))
    rows = onnx_parity(model, staging / NAME, manifest["min_frames"])
    fused = fused_op_counts(staging / NAME, target)
    check_fused(model, fused["graph"], target)
    entry = manifest["variants"]["fp32"] = variant_entry(NAME, files, target, "fp32", parity=parity_record(rows),
                                                         fused_ops=fused)
    return entry
