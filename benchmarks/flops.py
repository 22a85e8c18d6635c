"""Floating-point operations of one forward pass, from the config and the frame count.

Counts matrix products and convolutions (2 FLOPs per multiply-add), the work a
GEMM roofline bounds; elementwise ops, softmax and LayerNorm are left out.
Position terms are counted as our graph computes them (relative_key: Q·Eᵀ over
left+right+1 embeddings, not transformers' [T, T, head_dim] einsum, which adds
2·T²·C per layer: +12 GFLOP for w2v-bert-2.0 at 500 frames).
"""

from __future__ import annotations

from typing import Any


def _attention(frames: int, width: int, position: str | None, relative_positions: int) -> int:
    t, c = frames, width
    flops = 4 * 2 * t * c * c  # q, k, v, out projections
    flops += 2 * 2 * t * t * c  # Q·Kᵀ and P·V over all heads
    if position == "relative_key":
        flops += 2 * t * relative_positions * c  # Q·Eᵀ per distance embedding
    elif position == "relative":
        flops += 2 * (2 * t - 1) * c * c  # linear_pos on 2T-1 sinusoids
        flops += 2 * t * (2 * t - 1) * c  # (Q + v)·posᵀ before the skew
    return flops


def conformer_layer(frames: int, config: dict[str, Any]) -> int:
    t, c, i = frames, config["hidden_size"], config["intermediate_size"]
    relative = config["left_max_position_embeddings"] + config["right_max_position_embeddings"] + 1
    flops = 2 * (2 * 2 * t * c * i)  # two half-step feed-forward blocks
    flops += _attention(t, c, config["position_embeddings_type"], relative)
    flops += 2 * t * c * 2 * c  # pointwise conv 1 (to 2C, before GLU)
    flops += 2 * t * c * config["conv_depthwise_kernel_size"]  # depthwise conv
    flops += 2 * t * c * c  # pointwise conv 2
    return flops


def adapter_lengths(frames: int, config: dict[str, Any]) -> list[int]:
    """Frames after each adapter layer (the convolution's own output length)."""
    k, s, lengths = config["adapter_kernel_size"], config["adapter_stride"], []
    for _ in range(config["num_adapter_layers"]):
        frames = (frames + 2 * (s // 2) - k) // s + 1
        lengths.append(frames)
    return lengths


def adapter_flops(frames: int, config: dict[str, Any]) -> tuple[int, int]:
    """(FLOPs, output frames) of the projection + adapter layers."""
    c, out = config["hidden_size"], config["output_hidden_size"]
    flops = 2 * frames * c * out if out != c else 0
    k, t = config["adapter_kernel_size"], frames
    for t in adapter_lengths(frames, config):
        flops += 2 * (2 * t * out * 2 * out * k)  # residual conv and attention conv, each to 2C
        flops += _attention(t, out, None, 0)
        flops += 2 * 2 * t * out * config["intermediate_size"]
    return flops, t


def head_flops(frames: int, width: int, config: dict[str, Any], head: str) -> int:
    if head == "CTC":
        return 2 * frames * width * config["vocab_size"]
    if head == "SequenceClassification":
        return 2 * frames * width * config["classifier_proj_size"] + 2 * config["classifier_proj_size"] * len(
            config["id2label"])
    if head == "AudioFrameClassification":
        return 2 * frames * width * len(config["id2label"])
    if head == "XVector":
        dims, kernels, dilations = config["tdnn_dim"], config["tdnn_kernel"], config["tdnn_dilation"]
        flops, t, previous = 2 * frames * width * dims[0], frames, dims[0]
        for d, k, dil in zip(dims, kernels, dilations):
            t = t - dil * (k - 1)
            flops += 2 * t * previous * k * d
            previous = d
        return flops + 2 * 2 * dims[-1] * config["xvector_output_dim"] + 2 * config["xvector_output_dim"] ** 2
    return 0


def model_flops(config: dict[str, Any], head: str, frames: int, batch: int = 1) -> int:
    """FLOPs of a forward pass over `batch` utterances of `frames` stacked (160-dim) frames."""
    flops = 2 * frames * config["feature_projection_input_dim"] * config["hidden_size"]
    flops += config["num_hidden_layers"] * conformer_layer(frames, config)
    width, t = config["hidden_size"], frames
    if config.get("use_intermediate_ffn_before_adapter"):
        flops += 2 * 2 * frames * config["hidden_size"] * config["intermediate_size"]
    if config.get("add_adapter"):
        extra, t = adapter_flops(frames, config)
        flops += extra
        width = config["output_hidden_size"]
    return batch * (flops + head_flops(t, width, config, head))


def attention_core_flops(config: dict[str, Any], frames: int, batch: int = 1) -> int:
    """FLOPs of Q·Kᵀ and P·V in every attention layer: the matrix work inside the MultiHeadAttention
    nodes, which onnxruntime times as one kernel with the softmax and the bias add."""
    per_layer = 2 * 2 * frames * frames * config["hidden_size"]
    flops = config["num_hidden_layers"] * per_layer
    if config.get("add_adapter"):
        flops += sum(2 * 2 * t * t * config["output_hidden_size"] for t in adapter_lengths(frames, config))
    return batch * flops


def frames_for_seconds(seconds: float) -> int:
    """Stacked frames SeamlessM4TFeatureExtractor makes from `seconds` of 16 kHz audio."""
    samples = int(seconds * 16000)
    fbank = 1 + (samples - 400) // 160
    return fbank // 2
