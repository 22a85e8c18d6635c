"""The CPU form of an `ort` graph: each SkipLayerNormalization back to Add + LayerNormalization.

The `ort` target emits com.microsoft SkipLayerNormalization for every residual sum
that feeds a LayerNorm: on CUDA one kernel saves a pass over the activations. On
the CPU provider of onnxruntime 1.32 the same op is a slowdown: its kernel takes
1.60 ms per (1, 500, 1024) call where Add + LayerNormalization take 0.29 ms
(2 threads, 2-core AVX-512 machine), and the 600M fp32 forward at 10 s runs
2669 ms fused vs 2490 ms unfused. So an `ort` variant whose graph holds the
fused op also carries a CPU form, and the runtime loads it for provider "cpu".

The CPU form differs only in those nodes: it reuses the variant's external
weight file when there is one (no extra bytes); a model small enough to embed
its weights (< 2 GB) embeds them in both files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.errors import ExportError
from runtime.manifest import CPU_FORM as KEY  # variants[precision][KEY] = {"file", "files", "parity", "fused_ops"}

log = logging.getLogger("w2vbert")


def unfuse_skip_layernorm(model) -> int:
    """Rewrite every com.microsoft SkipLayerNormalization back to Add + LayerNormalization.

        x, skip -> SkipLayerNormalization(gamma, beta) -> out [, mean, inv_std, x + skip]
        becomes
        x, skip -> Add -> x + skip -> LayerNormalization(gamma, beta, axis=-1) -> out

    onnxruntime does not refuse them for the CPU provider. Returns how many were rewritten.
    """
    from onnx import helper

    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type != "SkipLayerNormalization" or node.domain != "com.microsoft":
            nodes.append(node)
            continue
        if len(node.input) > 4 and node.input[4]:
            raise ExportError(f"{node.name}: SkipLayerNormalization with a bias input is not produced by this "
                              "exporter; refusing to rewrite it")
        if any(o in used for o in node.output[1:3] if o):
            raise ExportError(f"{node.name}: mean / inv_std outputs are used; cannot rewrite")
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        summed = node.output[3] if len(node.output) > 3 and node.output[3] else f"{node.name}_sum"
        nodes.append(helper.make_node("Add", node.input[:2], [summed], name=f"{node.name}_add"))
        nodes.append(helper.make_node("LayerNormalization", [summed, node.input[2], node.input[3]],
                                      [node.output[0]], name=f"{node.name}_ln", axis=-1, epsilon=eps))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    log.info("unfused %d SkipLayerNormalization into Add + LayerNormalization", count)
    return count


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

    from .export import check_onnx
    from .fusion_report import fused_op_counts

    model = onnx.load(str(staging / variant["file"]), load_external_data=False)
    if not unfuse_skip_layernorm(model):
        return
    name = form_name(variant["file"])
    # Initializers stored outside keep their external_data entries: the form points at the
    # variant's own weight file, written once.
    onnx.save_model(model, str(staging / name))
    check_onnx(staging / name)
    shared = sorted({entry.value for t in model.graph.initializer for entry in t.external_data
                     if entry.key == "location"})
    missing = [f for f in shared if f not in variant["files"]]
    if missing:
        raise ExportError(f"{name} refers to weight files {missing} that are not part of {variant['file']}")
    log.info("CPU form %s: parity vs the PyTorch reference", name)
    variant[KEY] = {"file": name, "files": [name, *shared], "parity": parity(staging / name),
                    "fused_ops": fused_op_counts(staging / name, target)}
