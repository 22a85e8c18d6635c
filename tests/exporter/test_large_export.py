"""The 600M-parameter preset: over the 2 GB protobuf limit. Slow (~3 min, 8 GB RAM): -m slow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exporter.export import export


@pytest.mark.slow
def test_w2v_bert_2_0_exports_with_one_external_data_file(tmp_path):
    out = export("w2v-bert-2.0", tmp_path / "big")
    names = sorted(p.name for p in out.iterdir())
    # the CPU form (SkipLayerNormalization unfused) reads the same one weight file
    assert names == ["manifest.json", "model.fp32.cpu.onnx", "model.fp32.onnx", "model.fp32.onnx.data"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["model.fp32.onnx.data"]["bytes"] > 2 * 1024 ** 3
    for name in ("model.fp32.onnx", "model.fp32.cpu.onnx"):
        assert manifest["files"][name]["bytes"] < 10 * 2 ** 20  # the graph only: weights live in the .data
    variant = manifest["variants"]["fp32"]
    assert variant["files"] == ["model.fp32.onnx", "model.fp32.onnx.data"]
    assert variant["cpu_form"]["files"] == ["model.fp32.cpu.onnx", "model.fp32.onnx.data"]
    assert variant["parity"]["last_hidden_state"]["max_abs"] <= 1e-4

    # what a user loads: the Session on the CPU form, against the PyTorch reference on fresh input
    import torch

    from exporter.model.checkpoint import load_model
    from exporter.parity.compare import tolerance
    from runtime import Session

    rng = np.random.default_rng(7)
    features, mask = rng.standard_normal((1, 83, 160)).astype(np.float32), np.ones((1, 83), np.int64)
    got = Session(out, threads=2).run(features, mask)["last_hidden_state"]
    with torch.no_grad():
        expected = load_model("w2v-bert-2.0")(torch.from_numpy(features), torch.from_numpy(mask))
    err = float(np.abs(got - expected["last_hidden_state"].numpy()).max())
    assert err <= tolerance("fp32", "last_hidden_state"), f"max abs {err:.2e} against the reference"
