"""The 600M-parameter preset: over the 2 GB protobuf limit. Slow (~1 min, 5 GB RAM): -m slow."""

from __future__ import annotations

import json

import pytest

from exporter.export import export


@pytest.mark.slow
def test_w2v_bert_2_0_exports_with_one_external_data_file(tmp_path):
    out = export("w2v-bert-2.0", tmp_path / "big")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json", "model.fp32.onnx", "model.fp32.onnx.data"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["model.fp32.onnx.data"]["bytes"] > 2 * 1024 ** 3
    assert manifest["variants"]["fp32"]["parity"]["last_hidden_state"]["max_abs"] <= 1e-4
