"""Our reference model vs transformers, loaded from checkpoints transformers saved."""

from __future__ import annotations

import pytest
import torch

from exporter import load_model
from exporter.parity.compare import assert_close
from tests.conftest import POSITION_TYPES, padded_batch

HEADS = ["Model", "CTC", "SequenceClassification", "AudioFrameClassification", "XVector"]
LENGTHS = (32, 51, 80)
CASES = [(p, h, None) for p in POSITION_TYPES for h in HEADS]
# transformers' XVector only works with the adapter when output_hidden_size == hidden_size.
CASES += [(p, h, "same" if h == "XVector" else "wider") for p in POSITION_TYPES for h in ("Model", "CTC", "XVector")]


def _compare(path, hf_model, head=None):
    ours = load_model(path, head=head)
    for frames in LENGTHS:
        features, mask = padded_batch(frames, seed=frames)
        x, m = torch.from_numpy(features), torch.from_numpy(mask)
        with torch.no_grad():
            expected = hf_model(x, attention_mask=m)
            got = ours(x, m)
        reference = {name: expected[name] for name in got}
        assert_close(reference, got, "reference", label=f"{frames} frames")


@pytest.mark.parametrize("position,head,adapter", CASES, ids=lambda v: str(v))
def test_matches_transformers(hf_checkpoint, position, head, adapter):
    path, hf_model = hf_checkpoint(head, position, adapter)
    _compare(path, hf_model)


@pytest.mark.parametrize("position", POSITION_TYPES, ids=str)
@pytest.mark.parametrize("head", ["SequenceClassification", "AudioFrameClassification", "XVector"])
def test_weighted_layer_sum(hf_checkpoint, position, head):
    path, hf_model = hf_checkpoint(head, position, use_weighted_layer_sum=True)
    _compare(path, hf_model)


@pytest.mark.parametrize("head", ["Model", "CTC"])
def test_intermediate_ffn_before_adapter(hf_checkpoint, head):
    path, hf_model = hf_checkpoint(head, "relative_key", "wider", use_intermediate_ffn_before_adapter=True)
    _compare(path, hf_model)


def test_unmasked_input_equals_all_ones_mask(hf_checkpoint):
    path, hf_model = hf_checkpoint("CTC", "rotary")
    ours = load_model(path)
    features, _ = padded_batch(40)
    x = torch.from_numpy(features)
    with torch.no_grad():
        assert_close({"logits": hf_model(x).logits}, ours(x), "reference")


def test_head_override_loads_encoder_of_a_ctc_checkpoint(hf_checkpoint):
    path, hf_model = hf_checkpoint("CTC", "relative")
    ours = load_model(path, head="Model")
    features, mask = padded_batch(33)
    x, m = torch.from_numpy(features), torch.from_numpy(mask)
    with torch.no_grad():
        expected = hf_model.wav2vec2_bert(x, attention_mask=m).last_hidden_state
        assert_close({"last_hidden_state": expected}, ours(x, m), "reference")
