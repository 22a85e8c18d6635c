"""Each com.microsoft SkipLayerNormalization back to Add + LayerNormalization (in place).

Used for the CPU form of `ort` graphs (exporter.steps.cpu_form) and for the int8 / int8-qdq /
int4 variants, whose runtimes are onnxruntime's CPU kernels (and TensorRT for int8-qdq).
"""

from __future__ import annotations

import logging

from runtime.errors import ExportError

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
