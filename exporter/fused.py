"""Attention emitted in fused form at trace time, and the export-time weight folding per target.

Target "ort": every self-attention (encoder and adapter) is traced into ONE
``com.microsoft::MultiHeadAttention`` node: query, key and value (B, T, C), a
zero projection bias, the int32 key padding mask and, for the relative position
types, the (B, H, T, T) position term as ``attention_bias``. Eagerly the same
function computes the plain math, so PyTorch and ONNX Runtime can be compared.

Target "tensorrt": standard ONNX only, MatMul -> Add -> Softmax -> MatMul, which
TensorRT's parser fuses; the 1/sqrt(d) scale sits in the Q projection weights,
i.e. before the first MatMul, as TensorRT's fusion wants.

Both targets: the Macaron FFNs' 0.5 residual weight is folded into their output
projections. Target "ort" also traces each residual Add + LayerNorm as one
SkipLayerNormalization (exporter.cpu_form writes an fp32 copy without it for the CPU
provider; the int8 / int8-qdq / int4 variants drop it) and the
depthwise convolution as a (1, K) 2-D Conv between channels-last transposes, which
onnxruntime's CPU provider runs with its blocked NCHWc kernels.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .attention import MASK_VALUE, SelfAttention

TARGETS = ("ort", "tensorrt")


def attend(q, k, v, key_mask, position_bias, heads: int):
    """(B, T, C) q (already scaled), k, v -> (B, T, C); the math MultiHeadAttention computes."""
    b, t, c = q.shape[0], q.shape[1], q.shape[2]
    qh = q.reshape(b, t, heads, c // heads).transpose(1, 2)  # (B, H, T, D)
    kh = k.reshape(b, -1, heads, c // heads).transpose(1, 2)
    vh = v.reshape(b, -1, heads, c // heads).transpose(1, 2)
    scores = torch.matmul(qh, kh.transpose(2, 3))  # (B, H, T, T)
    if position_bias is not None:
        scores = scores + position_bias
    scores = scores + ((1.0 - key_mask.to(scores.dtype)) * MASK_VALUE)[:, None, None, :]
    out = torch.matmul(torch.softmax(scores, dim=-1), vh).transpose(1, 2)  # (B, T, H, D)
    return out.reshape(b, t, c)


def _mha(g, q, k, v, zero_bias, mask, *bias, heads):
    return g.op("com.microsoft::MultiHeadAttention", q, k, v, zero_bias, mask, *bias,
                num_heads_i=heads, scale_f=1.0, mask_filter_value_f=MASK_VALUE)


class _MultiHeadAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, zero_bias, mask, heads: int):
        return attend(q, k, v, mask, None, heads)

    @staticmethod
    def symbolic(g, q, k, v, zero_bias, mask, heads):
        return _mha(g, q, k, v, zero_bias, mask, heads=heads)


class _MultiHeadAttentionBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, zero_bias, mask, bias, heads: int):
        return attend(q, k, v, mask, bias, heads)

    @staticmethod
    def symbolic(g, q, k, v, zero_bias, mask, bias, heads):
        return _mha(g, q, k, v, zero_bias, mask, bias, heads=heads)


def multi_head_attention(q, k, v, key_mask, position_bias, heads: int):
    """One MultiHeadAttention node when traced; `attend` when run."""
    # Every optional input before attention_bias is given: omitted inputs cannot be traced.
    zero_bias = torch.zeros(3 * q.shape[-1], dtype=q.dtype)
    mask = key_mask.to(torch.int32)
    if position_bias is None:
        return _MultiHeadAttention.apply(q, k, v, zero_bias, mask, heads)
    return _MultiHeadAttentionBias.apply(q, k, v, zero_bias, mask, position_bias, heads)


class _SkipLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, skip, gamma, beta, eps: float):
        summed = x + skip
        return nn.functional.layer_norm(summed, gamma.shape, gamma, beta, eps), summed

    @staticmethod
    def symbolic(g, x, skip, gamma, beta, eps):
        out, _, _, summed = g.op("com.microsoft::SkipLayerNormalization", x, skip, gamma, beta,
                                 epsilon_f=eps, outputs=4)
        return out, summed


def skip_layer_norm(x, skip, norm: nn.LayerNorm):
    """(LayerNorm(x + skip), x + skip) as one com.microsoft SkipLayerNormalization when traced."""
    return _SkipLayerNorm.apply(x, skip, norm.weight, norm.bias, norm.eps)


@torch.no_grad()
def for_target(model: nn.Module, target: str) -> nn.Module:
    """A copy of `model` prepared for tracing to `target` (the original is left untouched)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    from .model import ConformerLayer, ConvolutionModule

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
            if isinstance(module, nn.LayerNorm):
                module.fused = True  # read by exporter.model.add_norm (only residual sums use it)
            if isinstance(module, ConvolutionModule):
                module.channels_last_2d = True
    return prepared


def expected_attention_nodes(model: nn.Module) -> int:
    return sum(isinstance(m, SelfAttention) for m in model.modules())


def check_fused(model: nn.Module, graph_ops: dict[str, int], target: str) -> None:
    """Fail loudly when the exported graph does not hold the fused attention it should."""
    from runtime.errors import ExportError

    expected = expected_attention_nodes(model)
    found = graph_ops.get("MultiHeadAttention", 0)
    if target == "ort" and found != expected:
        raise ExportError(f"expected {expected} MultiHeadAttention nodes (one per self-attention), "
                          f"the graph has {found}: attention fusion did not apply")
    if target == "tensorrt" and (found or graph_ops.get("Softmax", 0) != expected):
        raise ExportError(f"the tensorrt graph should hold {expected} Softmax-based attentions and no "
                          f"MultiHeadAttention; it has {graph_ops.get('Softmax', 0)} and {found}")
