from __future__ import annotations

import json

import pytest

from exporter.model.config import W2VBertConfig
from runtime.errors import ConfigError, W2VBertError
from tests.conftest import tiny_config_dict


def _cfg(**overrides):
    return W2VBertConfig.from_dict({"model_type": "wav2vec2-bert", **tiny_config_dict(), **overrides})


def test_reads_transformers_config_json(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.Wav2Vec2BertConfig(**tiny_config_dict("rotary", "wider"), architectures=["Wav2Vec2BertForCTC"])
    hf.save_pretrained(tmp_path)
    config = W2VBertConfig.from_json_file(tmp_path / "config.json")
    assert config.position_embeddings_type == "rotary"
    assert config.output_hidden_size == 48 and config.add_adapter
    assert config.default_head == "CTC"
    assert config.tdnn_dim == (16, 16, 24)


def test_round_trips_through_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = _cfg(id2label={"0": "yes", "1": "no"})
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    hf = transformers.Wav2Vec2BertConfig.from_pretrained(tmp_path)
    assert hf.num_labels == 2 and hf.id2label[1] == "no"
    assert W2VBertConfig.from_dict(config.to_dict()) == config


def test_output_hidden_size_defaults_to_hidden_size():
    assert _cfg(output_hidden_size=None).output_hidden_size == 32


@pytest.mark.parametrize("overrides,needle", [
    ({"model_type": "wav2vec2"}, "model_type 'wav2vec2'"),
    ({"conv_depthwise_kernel_size": 4}, "must be odd"),
    ({"hidden_size": 30}, "not divisible by num_attention_heads"),
    ({"position_embeddings_type": "alibi"}, "position_embeddings_type 'alibi'"),
    ({"hidden_act": "mish"}, "hidden_act 'mish'"),
    ({"add_adapter": True, "output_hidden_size": 30}, "output_hidden_size 30 is not divisible"),
    ({"use_intermediate_ffn_before_adapter": True}, "add_adapter is false"),
    ({"tdnn_kernel": [1, 1]}, "same non-zero length"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
])
def test_impossible_configs_are_refused(overrides, needle):
    data = {"model_type": "wav2vec2-bert", **tiny_config_dict(), **overrides}
    with pytest.raises(ConfigError, match=needle) as info:
        W2VBertConfig.from_dict(data)
    assert isinstance(info.value, W2VBertError)


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        W2VBertConfig.from_json_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        W2VBertConfig.from_json_file(tmp_path / "config.json")


@pytest.mark.parametrize("head", ["SequenceClassification", "AudioFrameClassification"])
def test_adapter_with_classification_heads_is_refused_like_transformers(head):
    transformers = pytest.importorskip("transformers")
    data = tiny_config_dict(adapter="same")
    with pytest.raises(ValueError, match="adapter"):
        getattr(transformers, f"Wav2Vec2BertFor{head}")(transformers.Wav2Vec2BertConfig(**data))
    config = _cfg(**tiny_config_dict(adapter="same"))
    with pytest.raises(ConfigError, match="does not support the adapter"):
        config.check_head(head)


def test_ctc_without_vocab_is_refused():
    with pytest.raises(ConfigError, match="vocab_size"):
        _cfg(vocab_size=None).check_head("CTC")
