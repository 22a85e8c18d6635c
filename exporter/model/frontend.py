"""The Kaldi fbank front end as a traceable module, so an ONNX graph can start from raw samples.

Only ops TensorRT's ONNX parser supports (Gather, MatMul, elementwise, reductions):
the FFT is a matrix product against a fixed basis. Per-frame DC removal,
pre-emphasis, the povey window and the DFT are all linear in the frame, so they
fold into ONE constant (400, 514) matrix: spectrum = frames @ M.
Same math as ``runtime.features.FeatureExtractor`` (which mirrors transformers).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from runtime.fbank_constants import FFT_LENGTH, FRAME_LENGTH, HOP_LENGTH, MEL_FLOOR, PREEMPHASIS, VARIANCE_EPS
from runtime.features import kaldi_mel_filters, povey_window

from .conformer import conv_output_lengths


def analysis_matrix() -> np.ndarray:
    """(400, 2 * 257): frame -> [real | imaginary] spectrum, with DC removal, pre-emphasis, window."""
    n = FRAME_LENGTH
    dc = np.eye(n) - np.full((n, n), 1.0 / n)  # x - mean(x)
    emphasis = np.eye(n) - PREEMPHASIS * np.eye(n, k=-1)  # y[j] = x[j] - 0.97 x[j-1]
    emphasis[0, 0] = 1.0 - PREEMPHASIS  # Kaldi: y[0] = 0.03 x[0]
    linear = emphasis @ dc  # (n, n), applied as y = linear @ x
    bins = np.arange(FFT_LENGTH // 2 + 1)
    angles = 2.0 * np.pi * np.outer(np.arange(n), bins) / FFT_LENGTH  # zero padding to 512 is implicit
    dft = np.concatenate([np.cos(angles), -np.sin(angles)], axis=1)  # (n, 514)
    window = povey_window(n)
    return (linear.T @ (window[:, None] * dft)).astype(np.float32)  # x_row @ M


class FrontEnd(nn.Module):
    """waveform (B, S) float in [-1, 1], lengths (B,) int64 -> features (B, T, 160), mask (B, T)."""

    def __init__(self, num_mel_bins: int = 80, sampling_rate: int = 16000, stride: int = 2):
        super().__init__()
        self.num_mel_bins, self.stride = num_mel_bins, stride
        self.register_buffer("analysis", torch.from_numpy(analysis_matrix()))
        # Kaldi's 2**15 sample scale, squared, folded into the filters (exact: a power of two).
        filters = kaldi_mel_filters(num_mel_bins, sampling_rate) * 2.0 ** 30
        self.register_buffer("filters", torch.from_numpy(filters.astype(np.float32)))
        self.register_buffer("offsets", torch.arange(FRAME_LENGTH))

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor):
        samples = waveform.shape[1]
        count = torch.div(samples - FRAME_LENGTH, HOP_LENGTH, rounding_mode="floor") + 1
        index = torch.arange(count)[:, None] * HOP_LENGTH + self.offsets[None, :]  # (F, 400)
        frames = waveform[:, index]  # (B, F, 400)
        spectrum = torch.matmul(frames, self.analysis)  # (B, F, 514)
        bins = FFT_LENGTH // 2 + 1
        power = spectrum[..., :bins] ** 2 + spectrum[..., bins:] ** 2  # (B, F, 257)
        logmel = torch.log(torch.clamp(torch.matmul(power, self.filters), min=MEL_FLOOR))  # (B, F, M)

        real = torch.div(lengths - FRAME_LENGTH, HOP_LENGTH, rounding_mode="floor") + 1  # fbank frames
        return normalize_and_stack(logmel, real, self.stride)


def normalize_and_stack(logmel: torch.Tensor, real: torch.Tensor, stride: int = 2):
    """(B, F, M) log-mel with `real` (B,) valid frames each -> features (B, T, M * stride), mask (B, T).

    Per utterance and mel bin: mean and unbiased variance (ddof=1, as transformers) over the valid
    frames only, whatever the padding holds (sherpa-onnx pads with log(1e-10)); padding frames
    become 0; frames padded to a multiple of `stride` and stacked.
    """
    batch, count, bins = logmel.shape[0], logmel.shape[1], logmel.shape[2]
    valid = (torch.arange(count)[None, :] < real[:, None]).to(logmel.dtype)[:, :, None]  # (B, F, 1)
    n = real.to(logmel.dtype)[:, None, None]
    mean = (logmel * valid).sum(dim=1, keepdim=True) / n
    centered = (logmel - mean) * valid
    var = (centered ** 2).sum(dim=1, keepdim=True) / (n - 1)  # ddof=1, as transformers
    normed = centered / torch.sqrt(var + VARIANCE_EPS)  # padding frames stay 0

    # Pad the frame axis to a multiple of `stride` with zeros, then stack frames.
    stacked = torch.div(count + stride - 1, stride, rounding_mode="floor")
    take = torch.clamp(torch.arange(stacked * stride), max=count - 1)
    keep = (torch.arange(stacked * stride) < count).to(normed.dtype)[None, :, None]
    normed = normed[:, take] * keep  # (B, stacked * stride, M)
    features = normed.reshape(batch, stacked, bins * stride)  # (B, T, 160)
    # A stacked frame is real when its last fbank frame is (as transformers' mask).
    mask = (torch.arange(stacked)[None, :] < torch.div(real, stride, rounding_mode="floor")[:, None])
    return features, mask.to(torch.int64)


class WaveformModel(nn.Module):
    """Front end + reference model: raw samples in, the head's outputs out."""

    def __init__(self, model: nn.Module, preprocessor: dict):
        super().__init__()
        self.model = model
        self.head, self.config = model.head, model.config
        self.frontend = FrontEnd(int(preprocessor.get("num_mel_bins", 80)),
                                 int(preprocessor.get("sampling_rate", 16000)), int(preprocessor.get("stride", 2)))

    def forward(self, waveform: torch.Tensor, waveform_lengths: torch.Tensor):
        features, mask = self.frontend(waveform, waveform_lengths)
        outputs = self.model(features, mask)
        # Real output frames per utterance, so a C++ caller needs no length formula.
        outputs["output_lengths"] = conv_output_lengths(mask.sum(dim=1), self.config)
        return outputs


class LogMelModel(nn.Module):
    """sherpa-onnx's contract for a CTC model: raw log-mel (B, F, 80) as it computes it (padded with
    log(1e-10)) + frames per utterance (B,) int64 -> logits (B, T', V), output lengths (B,) int64.

    sherpa binds inputs and outputs by position, so their order is the contract; the per-utterance
    normalisation and the stacking of our front end happen in the graph.
    """

    def __init__(self, model: nn.Module, stride: int = 2):
        super().__init__()
        if model.head != "CTC":
            raise ValueError(f"sherpa-onnx runs CTC heads; this model's head is {model.head}")
        self.model, self.stride = model, stride
        self.head, self.config = model.head, model.config

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        features, mask = normalize_and_stack(x, x_lens, self.stride)
        logits = self.model(features, mask)["logits"]
        return logits, conv_output_lengths(mask.sum(dim=1), self.config)
