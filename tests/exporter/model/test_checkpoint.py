from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from exporter import load_model
from exporter.model.checkpoint import read_state_dict
from exporter.model.registry import OUTPUT_NAMES
from exporter.parity.compare import assert_close
from runtime.errors import CheckpointError, ConfigError
from tests.conftest import padded_batch


def _tensors(path):
    return load_file(str(path / "model.safetensors"))


def test_missing_key_is_named(hf_checkpoint):
    path, _ = hf_checkpoint("CTC")
    state = _tensors(path)
    del state["lm_head.bias"]
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 missing keys: lm_head\.bias"):
        load_model(path)


def test_wrong_shape_is_named(hf_checkpoint):
    path, _ = hf_checkpoint("Model")
    state = _tensors(path)
    state["encoder.layers.0.ffn1.output_dense.bias"] = torch.zeros(7)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"ffn1\.output_dense\.bias: checkpoint \(7,\) vs model \(32,\)"):
        load_model(path)


def test_unexpected_key_is_named(hf_checkpoint):
    path, _ = hf_checkpoint("Model")
    state = _tensors(path)
    state["encoder.layers.9.extra"] = torch.zeros(3)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected keys: encoder\.layers\.9\.extra"):
        load_model(path)


def test_wrong_model_type(hf_checkpoint):
    path, _ = hf_checkpoint("Model")
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "wav2vec2"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="model_type 'wav2vec2'; expected 'wav2vec2-bert'"):
        load_model(path)


def test_truncated_safetensors(hf_checkpoint):
    path, _ = hf_checkpoint("Model")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        load_model(path)


def test_missing_source_and_missing_weights(tmp_path):
    with pytest.raises(CheckpointError, match="neither an existing directory nor a preset"):
        load_model(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2-bert"}))
    with pytest.raises(CheckpointError, match="no weights in"):
        load_model(tmp_path)


def test_base_checkpoint_cannot_become_a_ctc_model(hf_checkpoint):
    path, _ = hf_checkpoint("Model")
    with pytest.raises(CheckpointError, match="missing keys: lm_head"):
        load_model(path, head="CTC")


def test_sharded_safetensors_and_weights_only_bin(hf_checkpoint, tmp_path):
    path, hf_model = hf_checkpoint("CTC", "rotary")
    state = _tensors(path)
    keys = sorted(state)
    half = len(keys) // 2
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((path / "config.json").read_text())
    save_file({k: state[k] for k in keys[:half]}, str(sharded / "a.safetensors"))
    save_file({k: state[k] for k in keys[half:]}, str(sharded / "b.safetensors"))
    index = {"weight_map": {k: ("a.safetensors" if i < half else "b.safetensors") for i, k in enumerate(keys)}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "config.json").write_text((path / "config.json").read_text())
    torch.save(state, binary / "pytorch_model.bin")
    features, mask = padded_batch(30)
    x, m = torch.from_numpy(features), torch.from_numpy(mask)
    with torch.no_grad():
        expected = {"logits": hf_model(x, attention_mask=m).logits}
        for source in (sharded, binary):
            assert_close(expected, load_model(source)(x, m), "reference", label=str(source))


def test_pickled_code_in_bin_is_refused(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("Model")
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.json").write_text((path / "config.json").read_text())
    torch.save({"x": torch.zeros(1), "f": print}, evil / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_dict(evil)


@pytest.mark.parametrize("head", list(OUTPUT_NAMES))
def test_tiny_preset_builds_every_head_deterministically(head):
    features, mask = padded_batch(20)
    x, m = torch.from_numpy(features), torch.from_numpy(mask)
    with torch.no_grad():
        first = load_model("tiny", head=head)(x, m)
        second = load_model("tiny", head=head)(x, m)
    assert set(first) == set(OUTPUT_NAMES[head])
    for name in first:
        assert torch.isfinite(first[name]).all()
        assert torch.equal(first[name], second[name])


def test_unknown_head():
    with pytest.raises(ConfigError, match="unknown head 'Foo'"):
        load_model("tiny", head="Foo")


def test_ctc_preset_is_the_600m_encoder_with_the_published_fine_tunes_adapter_and_head():
    from exporter.model.presets import preset_config

    base, ctc = preset_config("w2v-bert-2.0").to_dict(), preset_config("w2v-bert-2.0-ctc").to_dict()
    changed = {k for k in ctc if ctc[k] != base.get(k)}
    assert changed == {"add_adapter", "architectures"}  # adapter layers, kernel and stride are the defaults
    assert (ctc["add_adapter"], ctc["num_adapter_layers"], ctc["adapter_kernel_size"], ctc["adapter_stride"],
            ctc["output_hidden_size"]) == (True, 1, 3, 2, 1024)
    assert preset_config("w2v-bert-2.0-ctc").default_head == "CTC"
