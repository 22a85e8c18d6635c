"""Export step: the CPU form of an `ort` variant, its SkipLayerNormalizations as Add + LayerNormalization.

The `ort` target emits com.microsoft SkipLayerNormalization for every residual sum
that feeds a LayerNorm: on CUDA one kernel saves a pass over the activations. On
onnxruntime's CPU provider the same op is slower than Add + LayerNormalization
(benchmarks/results/graph-notes.md has the figures). So an `ort` variant whose graph
holds the fused op also carries a CPU form, and the runtime loads it for provider "cpu".

The CPU form differs only in those nodes: it reuses the variant's external
weight file when there is one (no extra bytes); a model small enough to embed
its weights (< 2 GB) embeds them in both files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.errors import ExportError
from runtime.manifest import CPU_FORM as KEY  # variants[precision][KEY] = {"file", "files", "parity", "fused_ops"}

from ..passes.op_counts import fused_op_counts
from ..passes.unfuse_skip_layernorm import unfuse_skip_layernorm
from ..trace.onnx_io import check_onnx, save

log = logging.getLogger("w2vbert")


def form_name(file: str) -> str:
    """model.fp32.onnx -> model.fp32.cpu.onnx"""
    stem = file[:-len(".onnx")] if file.endswith(".onnx") else file
    return f"{stem}.cpu.onnx"


def add_cpu_form(staging: Path, variant: dict, target: str, parity) -> None:
    """Write the CPU form of `variant` (a manifest entry) next to it and record it as variant[KEY].

    `parity(path) -> parity record` checks the written form against the reference.
    A graph without SkipLayerNormalization needs no CPU form: nothing is written.
    """
    import onnx

    model = onnx.load(str(staging / variant["file"]), load_external_data=False)
    if not unfuse_skip_layernorm(model):
        return
    name = form_name(variant["file"])
    # Initializers stored outside keep their external_data entries: the form points at the
    # variant's own weight file, written once.
    save(model, staging / name)
    check_onnx(staging / name)
    shared = sorted({entry.value for t in model.graph.initializer for entry in t.external_data
                     if entry.key == "location"})
    missing = [f for f in shared if f not in variant["files"]]
    if missing:
        raise ExportError(f"{name} refers to weight files {missing} that are not part of {variant['file']}")
    log.info("CPU form %s: parity vs the PyTorch reference", name)
    variant[KEY] = {"file": name, "files": [name, *shared], "parity": parity(staging / name),
                    "fused_ops": fused_op_counts(staging / name, target)}
