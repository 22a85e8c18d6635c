"""The reference model prepared for tracing to a target, and the check that fusion happened.

Both targets fold the 1/sqrt(d) attention scale into the Q projection (TensorRT's fusion
wants the scale before the first MatMul) and the Macaron FFNs' 0.5 residual weight into
their output projections. Target "ort" also switches each self-attention to one
com.microsoft MultiHeadAttention, each residual Add + LayerNorm to one
SkipLayerNormalization (exporter.steps.cpu_form writes an fp32 copy without it for the CPU
provider; the int8 / int8-qdq / int4 variants drop it), and the depthwise convolution to a
(1, K) 2-D Conv between channels-last transposes, which onnxruntime's CPU provider runs with
its blocked NCHWc kernels. Target "tensorrt" keeps standard ONNX ops only.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from runtime.errors import ExportError

from ..model.attention import SelfAttention
from ..model.conformer import AdapterLayer, ConformerLayer, ConvolutionModule
from ..plan import TARGETS


@torch.no_grad()
def for_target(model: nn.Module, target: str, fused_norms: bool = True) -> nn.Module:
    """A copy of `model` prepared for tracing to `target` (the original is left untouched).

    `fused_norms=False` (target ort): residual Add + LayerNorm stay two ops, the CPU form from the start."""
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; expected one of {TARGETS}")
    prepared = copy.deepcopy(model).eval()
    for module in prepared.modules():
        if isinstance(module, SelfAttention):
            if module.position_embeddings_type == "relative":
                module.linear_q.bias.add_(module.pos_bias_u.reshape(-1))  # Transformer-XL's u: a Q bias
                module.u_folded = True
            module.linear_q.weight.mul_(module.scaling)  # fold 1/sqrt(d) into the Q projection
            module.linear_q.bias.mul_(module.scaling)
            module.prescaled = True
            module.fused = target == "ort"
        if isinstance(module, ConformerLayer) and module.ffn_residual_scale != 1.0:
            for ffn in (module.ffn1, module.ffn2):
                ffn.output_dense.weight.mul_(module.ffn_residual_scale)
                ffn.output_dense.bias.mul_(module.ffn_residual_scale)
            module.ffn_residual_scale = 1.0
    if target == "ort":
        for module in prepared.modules():
            if isinstance(module, (ConformerLayer, AdapterLayer)):
                module.skip_layer_norm = fused_norms  # its residual Add + LayerNorms (model.conformer.add_norm)
            if isinstance(module, ConvolutionModule):
                module.channels_last_2d = True
    return prepared


def expected_attention_nodes(model: nn.Module) -> int:
    return sum(isinstance(m, SelfAttention) for m in model.modules())


def check_fused(model: nn.Module, graph_ops: dict[str, int], target: str) -> None:
    """Fail loudly when the exported graph does not hold the fused attention it should."""
    expected = expected_attention_nodes(model)
    found = graph_ops.get("MultiHeadAttention", 0)
    if target == "ort" and found != expected:
        raise ExportError(f"expected {expected} MultiHeadAttention nodes (one per self-attention), "
                          f"the graph has {found}: attention fusion did not apply")
    if target == "tensorrt" and (found or graph_ops.get("Softmax", 0) != expected):
        raise ExportError(f"the tensorrt graph should hold {expected} Softmax-based attentions and no "
                          f"MultiHeadAttention; it has {graph_ops.get('Softmax', 0)} and {found}")
