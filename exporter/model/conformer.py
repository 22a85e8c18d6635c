"""Reference Wav2Vec2-BERT encoder (feature projection, Conformer layers, adapter), export friendly.

Module and parameter names follow transformers so ``state_dict``s load with
``strict=True``. Traceable by construction: no caches keyed on sequence length,
no Python branching on data, every shape read from a tensor. The padding mask
is always a tensor; ``attention_mask=None`` means "every frame is real".
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import SelfAttention, relative_key_rows, relative_sinusoids, rotary_tables
from .config import W2VBertConfig
from .ops import skip_layer_norm


def activation(name: str) -> nn.Module:
    """transformers' ACT2FN names -> modules (validated in config)."""
    if name in ("swish", "silu"):
        return nn.SiLU()
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name]()


def adapter_layer_lengths(lengths: torch.Tensor, config: W2VBertConfig) -> torch.Tensor:
    """Real frames after one adapter layer's strided convolution.

    transformers' formula, in integer form. It pads kernel_size // 2 although the
    convolution pads stride // 2; we follow it so masks and lengths agree with it.
    """
    pad, kernel = config.adapter_kernel_size // 2, config.adapter_kernel_size
    return torch.div(lengths + 2 * pad - kernel, config.adapter_stride, rounding_mode="floor") + 1


def conv_output_lengths(lengths: torch.Tensor, config: W2VBertConfig) -> torch.Tensor:
    """Real frames at the model output for `lengths` real input frames."""
    if config.add_adapter:
        for _ in range(config.num_adapter_layers):
            lengths = adapter_layer_lengths(lengths, config)
    return lengths


def add_norm(x: torch.Tensor, skip: torch.Tensor, norm: nn.LayerNorm,
             fused: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(norm(x + skip), x + skip); `fused`: traced as one SkipLayerNormalization (target ort)."""
    if fused:
        return skip_layer_norm(x, skip, norm)
    summed = x + skip
    return norm(summed), summed


def length_mask(lengths: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """(B,) lengths -> (B, T) 0/1 int64 mask of positions < length."""
    return (torch.arange(frames)[None, :] < lengths[:, None]).to(torch.int64)


class FeatureProjection(nn.Module):
    def __init__(self, config: W2VBertConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.feature_projection_input_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.feature_projection_input_dim, config.hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(features))


class FeedForward(nn.Module):
    def __init__(self, config: W2VBertConfig, act: str | None = None, hidden_size: int | None = None):
        super().__init__()
        hidden_size = hidden_size or config.hidden_size
        self.intermediate_dense = nn.Linear(hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(act or config.hidden_act)
        self.output_dense = nn.Linear(config.intermediate_size, hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.intermediate_act_fn(self.intermediate_dense(hidden)))


class ConvolutionModule(nn.Module):
    """LayerNorm -> pointwise conv + GLU -> causal depthwise conv -> LayerNorm -> act -> pointwise conv."""

    def __init__(self, config: W2VBertConfig):
        super().__init__()
        c = config.hidden_size
        self.kernel_size = config.conv_depthwise_kernel_size
        self.layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.pointwise_conv1 = nn.Conv1d(c, 2 * c, kernel_size=1, bias=False)
        self.depthwise_conv = nn.Conv1d(c, c, self.kernel_size, groups=c, bias=False)
        self.depthwise_layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.activation = activation(config.hidden_act)
        self.pointwise_conv2 = nn.Conv1d(c, c, kernel_size=1, bias=False)
        self.channels_last_2d = False  # set by exporter.trace.prepare.for_target for the ort target

    def forward(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`hidden` is already normalised by self.layer_norm (the caller fuses it with the residual)."""
        # Padding must not leak into real frames through the depthwise kernel.
        hidden = hidden * frame_mask[:, :, None].to(hidden.dtype)
        # Pointwise Conv1d(k=1) == a matrix product: traced as MatMul, so it fuses and quantizes
        # as one (onnxruntime has no fast integer Conv), and no transposes are needed around it.
        hidden = nn.functional.glu(nn.functional.linear(hidden, self.pointwise_conv1.weight[:, :, 0]), dim=-1)
        if self.channels_last_2d:
            hidden = self._depthwise_2d(hidden)
        else:
            # Causal: the whole receptive field lies on the left.
            hidden = nn.functional.pad(hidden.transpose(1, 2), (self.kernel_size - 1, 0))  # (B, C, K-1+T)
            hidden = self.depthwise_conv(hidden).transpose(1, 2)  # (B, T, C)
        hidden = self.activation(self.depthwise_layer_norm(hidden))  # (B, T, C)
        return nn.functional.linear(hidden, self.pointwise_conv2.weight[:, :, 0])  # (B, T, C)

    def _depthwise_2d(self, hidden: torch.Tensor) -> torch.Tensor:
        """The same causal depthwise conv as a (1, K) 2-D conv between channels-last transposes.

        onnxruntime's CPU provider runs a 1-D depthwise Conv as one small GEMM per channel
        (2.96 ms at (1, 1024, 500), k=31); the 2-D form goes to its blocked NCHWc kernels,
        which also absorb both transposes (0.74 ms, measured on the 2-core AVX-512 machine).
        """
        hidden = hidden.unsqueeze(1).permute(0, 3, 1, 2)  # (B, C, 1, T)
        hidden = nn.functional.pad(hidden, (self.kernel_size - 1, 0))  # (B, C, 1, K-1+T)
        weight = self.depthwise_conv.weight[:, :, None]  # (C, 1, 1, K)
        hidden = nn.functional.conv2d(hidden, weight, groups=self.depthwise_conv.groups)  # (B, C, 1, T)
        return hidden.permute(0, 2, 3, 1).squeeze(1)  # (B, T, C)


class ConformerLayer(nn.Module):
    def __init__(self, config: W2VBertConfig):
        super().__init__()
        c = config.hidden_size
        self.ffn1_layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.ffn1 = FeedForward(config)
        self.self_attn_layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.self_attn = SelfAttention(config)
        self.conv_module = ConvolutionModule(config)
        self.ffn2_layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.ffn2 = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        # Macaron half-step residual weight; export folds it into the FFN output projections
        # (exact: a power of two) and sets it to 1, which drops a Mul per FFN from the graph.
        self.ffn_residual_scale = 0.5
        self.skip_layer_norm = False  # set by exporter.trace.prepare.for_target for the ort target

    def forward(self, hidden, frame_mask, position_embeddings):
        # Each residual sum feeds the next LayerNorm: add_norm returns both (one
        # SkipLayerNormalization node in the onnxruntime graph).
        fused = self.skip_layer_norm
        normed, hidden = add_norm(self._half(self.ffn1(self.ffn1_layer_norm(hidden))), hidden,
                                  self.self_attn_layer_norm, fused)
        attended = self.self_attn(normed, frame_mask, position_embeddings)
        normed, hidden = add_norm(attended, hidden, self.conv_module.layer_norm, fused)
        normed, hidden = add_norm(self.conv_module(normed, frame_mask), hidden, self.ffn2_layer_norm, fused)
        normed, _ = add_norm(self._half(self.ffn2(normed)), hidden, self.final_layer_norm, fused)
        return normed

    def _half(self, ffn_out: torch.Tensor) -> torch.Tensor:
        return ffn_out if self.ffn_residual_scale == 1.0 else ffn_out * self.ffn_residual_scale


class Encoder(nn.Module):
    def __init__(self, config: W2VBertConfig):
        super().__init__()
        self.position_embeddings_type = config.position_embeddings_type
        self.hidden_size = config.hidden_size
        if self.position_embeddings_type == "rotary":
            d = config.head_size
            base = config.rotary_embedding_base
            inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
            self.register_buffer("inv_freq", inv_freq, persistent=False)
        if self.position_embeddings_type == "relative_key":
            self.left_max = config.left_max_position_embeddings
            self.right_max = config.right_max_position_embeddings
        self.layers = nn.ModuleList(ConformerLayer(config) for _ in range(config.num_hidden_layers))

    def position_embeddings(self, hidden: torch.Tensor) -> torch.Tensor | None:
        length = hidden.shape[1]
        if self.position_embeddings_type == "relative":
            return relative_sinusoids(length, self.hidden_size, hidden.dtype)
        if self.position_embeddings_type == "rotary":
            return rotary_tables(length, self.inv_freq, hidden.dtype)
        if self.position_embeddings_type == "relative_key":  # one gather index for all layers
            return relative_key_rows(length, self.left_max, self.right_max)
        return None

    def forward(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> list[torch.Tensor]:
        """Returns the input of the first layer and every layer's output (for weighted layer sums)."""
        hidden = hidden * frame_mask[:, :, None].to(hidden.dtype)
        position_embeddings = self.position_embeddings(hidden)
        states = [hidden]
        for layer in self.layers:
            states.append(layer(states[-1], frame_mask, position_embeddings))
        return states


class AdapterLayer(nn.Module):
    def __init__(self, config: W2VBertConfig):
        super().__init__()
        c = config.output_hidden_size
        k, s = config.adapter_kernel_size, config.adapter_stride
        self.residual_layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.residual_conv = nn.Conv1d(c, 2 * c, k, stride=s, padding=s // 2)
        self.activation = nn.GLU(dim=1)
        self.self_attn_layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.self_attn_conv = nn.Conv1d(c, 2 * c, k, stride=s, padding=s // 2)
        self.self_attn = SelfAttention(config, is_adapter_attention=True)
        self.ffn_layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config, act=config.adapter_act, hidden_size=c)
        self.skip_layer_norm = False  # set by exporter.trace.prepare.for_target for the ort target

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, C), lengths (B,) after this layer's subsampling -> (B, T', C)."""
        residual = self.residual_layer_norm(hidden).transpose(1, 2)  # (B, C, T)
        residual = self.activation(self.residual_conv(residual)).transpose(1, 2)  # (B, T', C)
        hidden = self.self_attn_layer_norm(hidden).transpose(1, 2)
        hidden = self.activation(self.self_attn_conv(hidden)).transpose(1, 2)  # (B, T', C)
        attended = self.self_attn(hidden, length_mask(lengths, hidden.shape[1]))
        normed, hidden = add_norm(attended, residual, self.ffn_layer_norm, self.skip_layer_norm)
        return self.ffn(normed) + hidden


class Adapter(nn.Module):
    def __init__(self, config: W2VBertConfig):
        super().__init__()
        self.config = config
        if config.output_hidden_size != config.hidden_size:
            self.proj = nn.Linear(config.hidden_size, config.output_hidden_size)
            self.proj_layer_norm = nn.LayerNorm(config.output_hidden_size, eps=config.layer_norm_eps)
        else:
            self.proj = self.proj_layer_norm = None
        self.layers = nn.ModuleList(AdapterLayer(config) for _ in range(config.num_adapter_layers))

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            hidden = self.proj_layer_norm(self.proj(hidden))
        for layer in self.layers:
            lengths = adapter_layer_lengths(lengths, self.config)
            hidden = layer(hidden, lengths)
        return hidden


class W2VBertModel(nn.Module):
    """The bare encoder; heads wrap it as ``wav2vec2_bert`` like transformers does."""

    def __init__(self, config: W2VBertConfig):
        super().__init__()
        self.config = config
        self.feature_projection = FeatureProjection(config)
        if config.has_spec_embed:
            # Training-only (SpecAugment), present so transformers' state dicts load strictly.
            self.masked_spec_embed = nn.Parameter(torch.zeros(config.hidden_size))
        self.encoder = Encoder(config)
        self.intermediate_ffn = FeedForward(config, act="relu") if config.use_intermediate_ffn_before_adapter else None
        self.adapter = Adapter(config) if config.add_adapter else None

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor):
        """Returns (last_hidden_state, encoder hidden states list)."""
        hidden = self.feature_projection(input_features)
        states = self.encoder(hidden, attention_mask)
        hidden = states[-1]
        if self.intermediate_ffn is not None:
            hidden = hidden + 0.5 * self.intermediate_ffn(hidden)
        if self.adapter is not None:
            hidden = self.adapter(hidden, attention_mask.sum(dim=1))
        return hidden, states
