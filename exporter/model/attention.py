"""Conformer self-attention with the four position-embedding types, written to be traced.

Parameter names match transformers' ``Wav2Vec2BertSelfAttention`` so its state
dicts load with ``strict=True``. Differences from transformers are in *how*
values are computed, never in what:

* relative_key (Shaw): transformers builds a [T, T, head_dim] tensor of distance
  embeddings (576 MB fp32 per layer at 30 s). Distances are clamped to
  [-left, right], so only left+right+1 embeddings exist: we compute Q·Eᵀ as
  (B, H, T, R) and gather by clamped distance.
* relative (Transformer-XL): the skew ("shift trick") is a gather by index
  T-1-i+j, and the sinusoid table is computed for the actual length instead of
  being cached for max_source_positions.
* rotary: cos/sin are computed from the actual length each call; transformers
  caches them keyed on a Python int, which tracing bakes into the graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import W2VBertConfig
from .ops import attend, multi_head_attention


def relative_sinusoids(length: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Transformer-XL table for relative positions T-1 ... -(T-1): (1, 2T-1, dim).

    Bit-identical to transformers' cached table: the same fp32 products feed sin/cos.
    """
    positions = (length - 1 - torch.arange(2 * length - 1)).to(torch.float32)  # (2T-1,)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.int64).float() * -(math.log(10000.0) / dim))
    angles = positions[:, None] * div_term[None, :]  # (2T-1, dim/2)
    table = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1)  # (2T-1, dim/2, 2)
    return table.reshape(1, -1, dim).to(dtype)  # interleave: sin at even, cos at odd


def rotary_tables(length: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(2, 1, T, 1, head_dim): cos and sin for positions 0..T-1, shaped for (B, T, H, D)."""
    time_stamps = torch.arange(length).to(inv_freq.dtype)
    freqs = time_stamps[:, None] * inv_freq[None, :]  # (T, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, D)
    return torch.stack((emb.cos(), emb.sin()))[:, None, :, None, :].to(dtype)


class SelfAttention(nn.Module):
    def __init__(self, config: W2VBertConfig, is_adapter_attention: bool = False):
        super().__init__()
        hidden = config.output_hidden_size if is_adapter_attention else config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_size = hidden // self.num_heads
        self.scaling = self.head_size ** -0.5
        # The adapter's attention never uses position embeddings (as in transformers).
        self.position_embeddings_type = None if is_adapter_attention else config.position_embeddings_type

        self.linear_q = nn.Linear(hidden, hidden)
        self.linear_k = nn.Linear(hidden, hidden)
        self.linear_v = nn.Linear(hidden, hidden)
        self.linear_out = nn.Linear(hidden, hidden)
        # Set by exporter.trace.prepare.for_target on the copy it traces:
        self.prescaled = False  # 1/sqrt(d) folded into linear_q
        self.fused = False  # one MultiHeadAttention node (target ort)
        self.u_folded = False  # relative: Transformer-XL's u folded into linear_q's bias

        if self.position_embeddings_type == "relative":
            self.linear_pos = nn.Linear(hidden, hidden, bias=False)
            self.pos_bias_u = nn.Parameter(torch.zeros(self.num_heads, self.head_size))
            self.pos_bias_v = nn.Parameter(torch.zeros(self.num_heads, self.head_size))
        if self.position_embeddings_type == "relative_key":
            self.left_max = config.left_max_position_embeddings
            self.right_max = config.right_max_position_embeddings
            self.distance_embedding = nn.Embedding(config.num_relative_positions, self.head_size)

    def forward(self, hidden: torch.Tensor, key_mask: torch.Tensor,
                position_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (B, T, C); key_mask (B, T) 1 = real frame; returns (B, T, C)."""
        query_key_input = hidden
        if self.position_embeddings_type == "rotary":
            query_key_input = self._rotate(hidden, position_embeddings)
        q = self.linear_q(query_key_input)  # (B, T, C)
        if not self.prescaled:
            q = q * self.scaling
        k = self.linear_k(query_key_input)
        v = self.linear_v(hidden)

        position_bias = None
        if self.position_embeddings_type == "relative":
            q, position_bias = self._relative(q, position_embeddings)
        elif self.position_embeddings_type == "relative_key":
            position_bias = self._relative_key(q, position_embeddings)

        if self.fused:
            out = multi_head_attention(q, k, v, key_mask, position_bias, self.num_heads)
        else:
            out = attend(q, k, v, key_mask, position_bias, self.num_heads)
        return self.linear_out(out)

    def _rotate(self, hidden: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        b, t = hidden.shape[0], hidden.shape[1]
        x = hidden.reshape(b, t, self.num_heads, self.head_size)  # (B, T, H, D)
        half = self.head_size // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        x = x * tables[0] + rotated * tables[1]
        return x.reshape(b, t, self.num_heads * self.head_size)

    def _relative(self, q: torch.Tensor, sinusoids: torch.Tensor):
        """Transformer-XL on a scaled q (B, T, C): returns (q + s*u, matrix-bd bias (B, H, T, T))."""
        b, t = q.shape[0], q.shape[1]
        u = (self.pos_bias_u * self.scaling).reshape(-1)  # (C,): the scale applies to q + u
        v = (self.pos_bias_v * self.scaling).reshape(-1)
        if self.u_folded:  # export put u into linear_q's bias: q already is s*(q + u)
            v, u = v - u, torch.zeros_like(u)
        pos = self.linear_pos(sinusoids)  # (1, 2T-1, C)
        pos = pos.reshape(1, -1, self.num_heads, self.head_size).permute(0, 2, 3, 1)  # (1, H, D, 2T-1)
        qv = (q + v).reshape(b, t, self.num_heads, self.head_size).transpose(1, 2)  # (B, H, T, D)
        bd = torch.matmul(qv, pos)  # (B, H, T, 2T-1)
        # The skew: column n of bd is relative position T-1-n, and entry (i, j) needs i-j.
        rows = torch.arange(t)[:, None]
        cols = torch.arange(t)[None, :]
        return q + u, gather_columns(bd, t - 1 - rows + cols)

    def _relative_key(self, q: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """Shaw on a scaled q (B, T, C): bias[b,h,i,j] = q[b,h,i] · E[clamp(j-i)], no (T, T, D) tensor.

        `rows`: relative_key_rows(T, ...) -- the same for every layer, so the encoder computes it once.
        """
        b, t = q.shape[0], q.shape[1]
        qh = q.reshape(b, t, self.num_heads, self.head_size).transpose(1, 2)  # (B, H, T, D)
        per_distance = torch.matmul(qh, self.distance_embedding.weight.t())  # (B, H, T, R)
        if rows is None:
            rows = relative_key_rows(t, self.left_max, self.right_max)
        return gather_rows(per_distance, rows)


def relative_key_rows(length: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """(T*T,) int64: for query i and key j, row i*R + clamp(j - i, -left, right) + left of (T*R, ...)."""
    positions = torch.arange(length)
    distance = positions[None, :] - positions[:, None]  # (T, T): j - i
    index = torch.clamp(distance, -left, right) + left  # (T, T) in [0, R)
    return (positions[:, None] * (left + right + 1) + index).reshape(-1)


def gather_columns(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """out[b, h, i, j] = values[b, h, i, index[i, j]] for values (B, H, T, R), index (T, T)."""
    t, r = values.shape[2], values.shape[3]
    return gather_rows(values, (torch.arange(t)[:, None] * r + index).reshape(-1))


def gather_rows(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """out[b, h, i, j] = values[b, h, i, r] where rows[i*T + j] = i*R + r; values (B, H, T, R).

    Rows of B*H values are gathered, then transposed back. Measured in onnxruntime at
    T=500, H=16 (2 threads), per layer: torch.gather's GatherElements needs the index
    expanded to (B, H, T, T), an Expand of 32 MB of int64 per layer (4.6 ms + 4 ms);
    one Gather of single elements on the last axis took 11 ms; this takes 2.5 ms.
    """
    b, h, t, r = values.shape
    table = values.reshape(b * h, t, r).permute(1, 2, 0).reshape(t * r, b * h)  # (T*R, B*H)
    picked = table.index_select(0, rows)  # (T*T, B*H)
    return picked.t().reshape(b, h, t, t)
