"""The five transformers heads over the reference encoder; forward returns HF-named outputs.

``build_model(config, head)`` is the one constructor; the heads' names, output names and
what the gates judge of each are in :mod:`exporter.model.registry`. Every head's forward is
``(input_features (B, T, 160) float, attention_mask (B, T) int | None) -> dict``.
Pooling over padded batches is vectorised (transformers loops over utterances in
XVector), giving the same values up to float summation order.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import W2VBertConfig
from .conformer import W2VBertModel, conv_output_lengths, length_mask


def _full_mask(input_features: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(input_features.shape[:2], dtype=torch.int64, device=input_features.device)
    return attention_mask.to(torch.int64)


class _Head(nn.Module):
    """Shared plumbing: the encoder as `wav2vec2_bert` and the optional weighted layer sum."""

    head = ""

    def __init__(self, config: W2VBertConfig):
        super().__init__()
        config.check_head(self.head)
        self.config = config
        self.wav2vec2_bert = W2VBertModel(config)
        if config.use_weighted_layer_sum and self.head != "CTC":
            layers = config.num_hidden_layers + 1  # the layers' input and every layer's output
            self.layer_weights = nn.Parameter(torch.ones(layers) / layers)

    def encode(self, input_features, attention_mask):
        mask = _full_mask(input_features, attention_mask)
        hidden, states = self.wav2vec2_bert(input_features, mask)
        if hasattr(self, "layer_weights"):
            # As in transformers: a weighted sum of the encoder states, ignoring the adapter.
            stacked = torch.stack(states, dim=1)  # (B, L+1, T, C)
            weights = torch.softmax(self.layer_weights, dim=-1)
            hidden = (stacked * weights[None, :, None, None]).sum(dim=1)  # (B, T, C)
        return hidden, mask


class Wav2Vec2BertModel(W2VBertModel):
    """Bare encoder with the head interface; no key prefix, as transformers saves it."""

    head = "Model"

    def __init__(self, config: W2VBertConfig):
        config.check_head(self.head)
        super().__init__(config)

    def forward(self, input_features, attention_mask=None):
        hidden, _ = super().forward(input_features, _full_mask(input_features, attention_mask))
        return {"last_hidden_state": hidden}


class Wav2Vec2BertForCTC(_Head):
    head = "CTC"

    def __init__(self, config: W2VBertConfig):
        super().__init__(config)
        width = config.output_hidden_size if config.add_adapter else config.hidden_size
        self.lm_head = nn.Linear(width, config.vocab_size)

    def forward(self, input_features, attention_mask=None):
        hidden, _ = self.encode(input_features, attention_mask)
        return {"logits": self.lm_head(hidden)}


class Wav2Vec2BertForSequenceClassification(_Head):
    head = "SequenceClassification"

    def __init__(self, config: W2VBertConfig):
        super().__init__(config)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def forward(self, input_features, attention_mask=None):
        hidden, mask = self.encode(input_features, attention_mask)
        hidden = self.projector(hidden)  # (B, T, P)
        # transformers pools over the first sum(mask) frames (a right-padded batch).
        pooling = length_mask(mask.sum(dim=1), hidden.shape[1]).to(hidden.dtype)[:, :, None]  # (B, T, 1)
        pooled = (hidden * pooling).sum(dim=1) / pooling.sum(dim=1)
        return {"logits": self.classifier(pooled)}


class Wav2Vec2BertForAudioFrameClassification(_Head):
    head = "AudioFrameClassification"

    def __init__(self, config: W2VBertConfig):
        super().__init__(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_features, attention_mask=None):
        hidden, _ = self.encode(input_features, attention_mask)
        return {"logits": self.classifier(hidden)}


class TDNNLayer(nn.Module):
    """Dilated 1-D convolution stored as a Linear over (kernel x channels), as in transformers."""

    def __init__(self, config: W2VBertConfig, layer_id: int):
        super().__init__()
        self.in_dim = config.tdnn_dim[layer_id - 1] if layer_id > 0 else config.tdnn_dim[0]
        self.out_dim = config.tdnn_dim[layer_id]
        self.kernel_size = config.tdnn_kernel[layer_id]
        self.dilation = config.tdnn_dilation[layer_id]
        self.kernel = nn.Linear(self.in_dim * self.kernel_size, self.out_dim)
        self.activation = nn.ReLU()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.kernel.weight.view(self.out_dim, self.kernel_size, self.in_dim).transpose(1, 2)
        hidden = nn.functional.conv1d(hidden.transpose(1, 2), weight, self.kernel.bias, dilation=self.dilation)
        return self.activation(hidden.transpose(1, 2))  # (B, T', out)


class AMSoftmaxWeight(nn.Module):
    """Training loss of XVector; kept only so its `weight` loads strictly."""

    def __init__(self, config: W2VBertConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(config.xvector_output_dim, config.num_labels))


class Wav2Vec2BertForXVector(_Head):
    head = "XVector"

    def __init__(self, config: W2VBertConfig):
        super().__init__(config)
        self.projector = nn.Linear(config.hidden_size, config.tdnn_dim[0])
        self.tdnn = nn.ModuleList(TDNNLayer(config, i) for i in range(len(config.tdnn_dim)))
        self.feature_extractor = nn.Linear(config.tdnn_dim[-1] * 2, config.xvector_output_dim)
        self.classifier = nn.Linear(config.xvector_output_dim, config.xvector_output_dim)
        self.objective = AMSoftmaxWeight(config)

    def forward(self, input_features, attention_mask=None):
        hidden, mask = self.encode(input_features, attention_mask)
        hidden = self.projector(hidden)
        for layer in self.tdnn:
            hidden = layer(hidden)  # (B, T', D)
        lengths = conv_output_lengths(mask.sum(dim=1), self.config)
        for kernel in self.config.tdnn_kernel:
            # transformers ignores dilation here; we follow it to pool the same frames.
            lengths = lengths - kernel + 1
        weights = length_mask(lengths, hidden.shape[1]).to(hidden.dtype)[:, :, None]  # (B, T', 1)
        count = weights.sum(dim=1)  # (B, 1)
        mean = (hidden * weights).sum(dim=1) / count
        var = (((hidden - mean[:, None, :]) * weights) ** 2).sum(dim=1) / (count - 1)  # unbiased, as torch.std
        embeddings = self.feature_extractor(torch.cat((mean, torch.sqrt(var)), dim=-1))
        return {"logits": self.classifier(embeddings), "embeddings": embeddings}


HEAD_CLASSES = {cls.head: cls for cls in (
    Wav2Vec2BertModel, Wav2Vec2BertForCTC, Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForAudioFrameClassification, Wav2Vec2BertForXVector)}


def build_model(config: W2VBertConfig, head: str | None = None) -> nn.Module:
    """A randomly initialised reference model of `head` (default: the config's architecture)."""
    head = head or config.default_head
    config.check_head(head)
    return HEAD_CLASSES[head](config).eval()
