"""Architecture presets with seeded random weights (model hubs are unreachable by design).

* ``tiny``: 2 layers, hidden 64 -- exports in seconds, for tests and first runs.
* ``w2v-bert-2.0``: the published 600M encoder's architecture (24 layers, hidden
  1024, 16 heads, FFN 4096, relative_key 64/8, depthwise kernel 31), for speed
  and memory studies. Weights are random: never read accuracy off this preset.
* ``w2v-bert-2.0-ctc``: that encoder as the published CTC fine-tunes of it are built
  (one adapter layer, kernel 3, stride 2, then a CTC head): what ASR deployments run,
  and the only layout CTranslate2's converter takes.
"""

from __future__ import annotations

import math

from .config import W2VBertConfig

PRESETS: dict[str, dict] = {
    "tiny": dict(
        model_type="wav2vec2-bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=256, conv_depthwise_kernel_size=31, position_embeddings_type="relative_key",
        left_max_position_embeddings=64, right_max_position_embeddings=8,
        architectures=["Wav2Vec2BertModel"],
    ),
    "w2v-bert-2.0": dict(
        model_type="wav2vec2-bert", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        intermediate_size=4096, conv_depthwise_kernel_size=31, position_embeddings_type="relative_key",
        left_max_position_embeddings=64, right_max_position_embeddings=8, hidden_act="swish",
        architectures=["Wav2Vec2BertModel"],
    ),
}
PRESETS["w2v-bert-2.0-ctc"] = dict(PRESETS["w2v-bert-2.0"], add_adapter=True, num_adapter_layers=1,
                                   adapter_kernel_size=3, adapter_stride=2, architectures=["Wav2Vec2BertForCTC"])
PRESET_SEED = 0
# Head defaults so a preset can be asked for any head (vocab of a character CTC model, etc.).
HEAD_DEFAULTS = dict(vocab_size=32, num_labels=4, tdnn_dim=[64, 64, 128], tdnn_kernel=[5, 3, 1],
                     tdnn_dilation=[1, 2, 1], xvector_output_dim=32, classifier_proj_size=64)


def preset_config(name: str) -> W2VBertConfig:
    return W2VBertConfig.from_dict({**HEAD_DEFAULTS, **PRESETS[name]})


def init_like_transformers(model, std: float = 0.02, seed: int = PRESET_SEED) -> None:
    """Seeded init with transformers' distributions, so activations have realistic ranges.

    Unlike transformers' zero init, biases and pos_bias_u/v get small non-zero values:
    zeros hide bugs in parity checks and would not exercise quantization of biases.
    """
    import torch  # here: the preset table and preset_config stay importable without torch

    with torch.no_grad():
        _init(model, std, torch.Generator().manual_seed(seed))


def _init(model, std: float, generator) -> None:
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std, generator=generator)
            if module.bias is not None:
                module.bias.normal_(0.0, std, generator=generator)
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std, generator=generator)
        elif isinstance(module, nn.Conv1d):
            fan_in = module.in_channels // module.groups * module.kernel_size[0]
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            if module.bias is not None:
                bound = math.sqrt(1.0 / fan_in)
                module.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.normal_(0.0, std, generator=generator)
    for name, param in model.named_parameters():
        if name.endswith(("pos_bias_u", "pos_bias_v")):
            bound = math.sqrt(6.0 / sum(param.shape))  # xavier uniform, as transformers
            param.uniform_(-bound, bound, generator=generator)
