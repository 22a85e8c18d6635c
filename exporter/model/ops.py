"""The attention math, and the two operators traced as one com.microsoft node each.

``attend`` is scaled-dot-product attention with an additive position term and a key
padding mask: what the reference runs eagerly and what the `tensorrt` target traces
(MatMul -> Add -> Softmax -> MatMul, which TensorRT's parser fuses).

For the `ort` target (exporter.trace.prepare switches the modules over), each
self-attention is traced into ONE ``com.microsoft::MultiHeadAttention`` node: query, key
and value (B, T, C), no projection bias (q, k and v come biased), the int32 key padding mask and, for the
relative position types, the (B, H, T, T) position term as ``attention_bias``; each
residual Add + LayerNorm into one ``SkipLayerNormalization``. Eagerly both compute the
plain math, so PyTorch and ONNX Runtime can be compared.
"""

from __future__ import annotations

import torch
from torch import nn

# Additive mask for padded keys. Finite on purpose: finfo.min + score overflows to
# -inf in fp16 and a fully masked row would then give NaN; -1e4 already makes
# exp() underflow to exactly 0 in fp32 and fp16 for any realistic score.
MASK_VALUE = -1.0e4


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


def _mha(g, q, k, v, mask, *bias, heads):
    # The projection bias input stays empty: q, k and v come biased, and a zero bias still costs
    # onnxruntime's CPU kernel an add pass per call (0.85 ms of 12.7 ms per layer at 10 s, 600M).
    # A None-typed constant is how torch's exporter writes an omitted optional input ("").
    omitted = g.op("prim::Constant")
    omitted.setType(torch._C.OptionalType.ofTensor())
    out = g.op("com.microsoft::MultiHeadAttention", q, k, v, omitted, mask, *bias,
               num_heads_i=heads, scale_f=1.0, mask_filter_value_f=MASK_VALUE)
    out.setType(q.type())  # (B, T, C) like q: torch's shape inference cannot know a contrib op's output
    return out


class _MultiHeadAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, heads: int):
        return attend(q, k, v, mask, None, heads)

    @staticmethod
    def symbolic(g, q, k, v, mask, heads):
        return _mha(g, q, k, v, mask, heads=heads)


class _MultiHeadAttentionBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, bias, heads: int):
        return attend(q, k, v, mask, bias, heads)

    @staticmethod
    def symbolic(g, q, k, v, mask, bias, heads):
        return _mha(g, q, k, v, mask, bias, heads=heads)


def multi_head_attention(q, k, v, key_mask, position_bias, heads: int):
    """One MultiHeadAttention node when traced; `attend` when run."""
    mask = key_mask.to(torch.int32)
    if position_bias is None:
        return _MultiHeadAttention.apply(q, k, v, mask, heads)
    return _MultiHeadAttentionBias.apply(q, k, v, mask, position_bias, heads)


class _SkipLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, skip, gamma, beta, eps: float):
        summed = x + skip
        return nn.functional.layer_norm(summed, gamma.shape, gamma, beta, eps), summed

    @staticmethod
    def symbolic(g, x, skip, gamma, beta, eps):
        out, mean, inv_std, summed = g.op("com.microsoft::SkipLayerNormalization", x, skip, gamma, beta,
                                          epsilon_f=eps, outputs=4)
        # Typed here: torch cannot infer a contrib op's outputs (and warns about each node).
        out.setType(x.type())
        summed.setType(x.type())
        sizes = x.type().varyingSizes()  # mean and inv_std: (..., 1), reduced over the last axis
        for stat in (mean, inv_std):
            stat.setType(x.type().with_sizes(sizes[:-1] + [1]) if sizes else x.type())
        return out, summed


def skip_layer_norm(x, skip, norm: nn.LayerNorm):
    """(LayerNorm(x + skip), x + skip) as one com.microsoft SkipLayerNormalization when traced."""
    return _SkipLayerNorm.apply(x, skip, norm.weight, norm.bias, norm.eps)
