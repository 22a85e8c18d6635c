"""Hugging Face ``config.json`` of model_type "wav2vec2-bert" -> validated :class:`W2VBertConfig`.

Only the fields that change inference are kept (dropout, SpecAugment and loss
settings are training-only). Unknown keys are ignored, as transformers does;
impossible values are rejected here so the model code can trust the config.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

from .registry import ARCHITECTURES, HEAD_NAMES

MODEL_TYPE = "wav2vec2-bert"
POSITION_TYPES = (None, "relative", "relative_key", "rotary")
# Activations the reference model implements (names as in transformers' ACT2FN).
ACTIVATIONS = ("swish", "silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh", "sigmoid")

@dataclass
class W2VBertConfig:
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    # 80 mel bins stacked by 2 in SeamlessM4TFeatureExtractor.
    feature_projection_input_dim: int = 160
    hidden_act: str = "swish"
    layer_norm_eps: float = 1e-5
    position_embeddings_type: str | None = "relative_key"
    rotary_embedding_base: int = 10000
    # Only sizes the sinusoid table in transformers; we compute it for any length.
    max_source_positions: int = 5000
    # Shaw distances are clamped to [-left, +right]: left+right+1 embeddings exist.
    left_max_position_embeddings: int = 64
    right_max_position_embeddings: int = 8
    conv_depthwise_kernel_size: int = 31
    add_adapter: bool = False
    adapter_kernel_size: int = 3
    adapter_stride: int = 2
    num_adapter_layers: int = 1
    adapter_act: str = "relu"
    # transformers replaces None with hidden_size; we do the same in from_dict.
    output_hidden_size: int | None = None
    use_intermediate_ffn_before_adapter: bool = False
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 768
    num_labels: int = 2
    id2label: dict[int, str] = field(default_factory=dict)
    vocab_size: int | None = None
    pad_token_id: int | None = 0
    tdnn_dim: tuple[int, ...] = (512, 512, 512, 512, 1500)
    tdnn_kernel: tuple[int, ...] = (5, 3, 3, 1, 1)
    tdnn_dilation: tuple[int, ...] = (1, 2, 3, 1, 1)
    xvector_output_dim: int = 512
    architectures: tuple[str, ...] = ()
    # SpecAugment is training-only, but transformers creates the `masked_spec_embed`
    # parameter whenever a probability is > 0, so strict state-dict loading needs to know.
    mask_time_prob: float = 0.05
    mask_feature_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.output_hidden_size is None:
            self.output_hidden_size = self.hidden_size
        if not self.id2label:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        self.num_labels = len(self.id2label)
        for name in ("tdnn_dim", "tdnn_kernel", "tdnn_dilation", "architectures"):
            setattr(self, name, tuple(getattr(self, name)))
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def default_head(self) -> str:
        """Head named by `architectures`, or the bare encoder when there is none."""
        for arch in self.architectures:
            if arch in ARCHITECTURES:
                return ARCHITECTURES[arch]
        return "Model"

    @property
    def num_relative_positions(self) -> int:
        return self.left_max_position_embeddings + self.right_max_position_embeddings + 1

    @property
    def has_spec_embed(self) -> bool:
        return self.mask_time_prob > 0.0 or self.mask_feature_prob > 0.0

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigError("invalid wav2vec2-bert config: " + "; ".join(problems))

    def _problems(self):
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "feature_projection_input_dim", "conv_depthwise_kernel_size", "output_hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                yield f"{name} must be a positive integer, got {value!r}"
        if isinstance(self.hidden_size, int) and isinstance(self.num_attention_heads, int) \
                and self.num_attention_heads > 0 and self.hidden_size % self.num_attention_heads:
            yield (f"hidden_size {self.hidden_size} is not divisible by "
                   f"num_attention_heads {self.num_attention_heads}")
        if isinstance(self.conv_depthwise_kernel_size, int) and self.conv_depthwise_kernel_size % 2 == 0:
            yield (f"conv_depthwise_kernel_size must be odd (transformers requires it), "
                   f"got {self.conv_depthwise_kernel_size}")
        if self.position_embeddings_type not in POSITION_TYPES:
            yield (f"position_embeddings_type {self.position_embeddings_type!r} is not one of "
                   f"{POSITION_TYPES}")
        if self.position_embeddings_type == "rotary" and self.head_size % 2:
            yield f"rotary embeddings need an even head size, got {self.head_size}"
        if self.left_max_position_embeddings < 0 or self.right_max_position_embeddings < 0:
            yield "left/right_max_position_embeddings must be >= 0"
        if not self.layer_norm_eps > 0:
            yield f"layer_norm_eps must be > 0, got {self.layer_norm_eps!r}"
        for name in ("hidden_act", "adapter_act"):
            if getattr(self, name) not in ACTIVATIONS:
                yield f"{name} {getattr(self, name)!r} is not supported; expected one of {ACTIVATIONS}"
        yield from self._adapter_problems()
        yield from self._head_problems()

    def _adapter_problems(self):
        if self.use_intermediate_ffn_before_adapter and not self.add_adapter:
            yield "use_intermediate_ffn_before_adapter is true but add_adapter is false"
        if not self.add_adapter:
            return
        for name in ("adapter_kernel_size", "adapter_stride", "num_adapter_layers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                yield f"{name} must be a positive integer, got {getattr(self, name)!r}"
        # The adapter attention uses output_hidden_size // num_attention_heads as head size.
        if isinstance(self.output_hidden_size, int) and self.output_hidden_size % self.num_attention_heads:
            yield (f"output_hidden_size {self.output_hidden_size} is not divisible by "
                   f"num_attention_heads {self.num_attention_heads} (the adapter attention needs it)")

    def _head_problems(self):
        if not (len(self.tdnn_dim) == len(self.tdnn_kernel) == len(self.tdnn_dilation)) or not self.tdnn_dim:
            yield (f"tdnn_dim, tdnn_kernel and tdnn_dilation must have the same non-zero length, got "
                   f"{len(self.tdnn_dim)}, {len(self.tdnn_kernel)}, {len(self.tdnn_dilation)}")
        if self.vocab_size is not None and self.vocab_size <= 0:
            yield f"vocab_size must be positive, got {self.vocab_size}"

    def check_head(self, head: str) -> None:
        """Refuse the head/config combinations transformers refuses, with the same reason."""
        if head not in HEAD_NAMES:
            raise ConfigError(f"unknown head {head!r}; expected one of {HEAD_NAMES}")
        if head in ("SequenceClassification", "AudioFrameClassification") and self.add_adapter:
            raise ConfigError(f"the {head} head does not support the adapter (add_adapter=True); "
                              "transformers refuses this combination too")
        if head == "CTC" and self.vocab_size is None:
            raise ConfigError("the CTC head needs vocab_size in config.json")
        if head == "XVector" and self.add_adapter and self.output_hidden_size != self.hidden_size:
            raise ConfigError(f"the XVector head with the adapter needs output_hidden_size == hidden_size "
                              f"(got {self.output_hidden_size} != {self.hidden_size}); its projector "
                              "reads hidden_size features, as in transformers")

    # ---------------------------------------------------------------- (de)serialise
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "W2VBertConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type")
        if model_type != MODEL_TYPE:
            raise ConfigError(f"config.json has model_type {model_type!r}; expected {MODEL_TYPE!r} "
                              "(only Wav2Vec2-BERT checkpoints are supported)")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid wav2vec2-bert config: {exc}") from exc

    @classmethod
    def from_json_file(cls, path: str | Path) -> "W2VBertConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no config.json at {path}; a Hugging Face checkpoint directory "
                              "holds config.json next to model.safetensors")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """A transformers-compatible dict (loads back with from_dict and with transformers)."""
        data = dataclasses.asdict(self)
        data["id2label"] = {str(k): v for k, v in self.id2label.items()}
        data["label2id"] = {v: k for k, v in self.id2label.items()}
        for name in ("tdnn_dim", "tdnn_kernel", "tdnn_dilation", "architectures"):
            data[name] = list(data[name])
        data["model_type"] = MODEL_TYPE
        return data
