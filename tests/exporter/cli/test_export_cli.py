"""`w2vbert export` on transformers-saved checkpoints; ONNX run directly by onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from exporter.cli import main
from exporter.parity.compare import assert_close
from tests.conftest import POSITION_TYPES, padded_batch

HEADS = ["Model", "CTC", "SequenceClassification", "AudioFrameClassification", "XVector"]
CASES = [(p, h, None) for p in POSITION_TYPES for h in HEADS]
CASES += [(p, h, "same" if h == "XVector" else "wider") for p in POSITION_TYPES for h in ("Model", "CTC", "XVector")]
LENGTHS = (29, 58, 97)  # all unlike the trace length (64)


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("position,head,adapter", CASES, ids=str)
def test_cli_export_matches_transformers(hf_checkpoint, tmp_path, position, head, adapter):
    path, hf_model = hf_checkpoint(head, position, adapter)
    out = tmp_path / "artifact"
    result = run_cli("export", path, "-o", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["head"] == head
    session = ort.InferenceSession(str(out / "model.fp32.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == [o["name"] for o in manifest["outputs"]]
    for frames in LENGTHS:
        features, mask = padded_batch(frames, seed=frames)
        got = dict(zip(names, session.run(None, {"input_features": features, "attention_mask": mask})))
        with torch.no_grad():
            expected = hf_model(torch.from_numpy(features), attention_mask=torch.from_numpy(mask))
        assert_close({n: expected[n] for n in names}, got, "fp32", label=f"{frames} frames")


def test_artifact_contents_and_metadata(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("CTC", "rotary", "wider")
    (path / "vocab.json").write_text(json.dumps({"<pad>": 0, "a": 1}))
    (path / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 16000, "stride": 2}))
    out = tmp_path / "a"
    assert run_cli("export", path, "-o", out).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"vocab.json", "preprocessor_config.json", "model.fp32.onnx"} <= set(manifest["files"])
    assert manifest["variants"]["fp32"]["parity"]["logits"]["max_abs"] < 1e-4
    assert manifest["outputs"][0]["shape"] == ["batch", "output_frames", 11]
    assert manifest["opset"] == 17 and "torch" in manifest["versions"] and "onnxruntime" in manifest["versions"]
    assert manifest["preprocessor"]["sampling_rate"] == 16000
    model = onnx.load(str(out / "model.fp32.onnx"), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["w2vbert.head"] == "CTC" and meta["w2vbert.vocab_file"] == "vocab.json"
    assert json.loads(meta["w2vbert.config"])["position_embeddings_type"] == "rotary"
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "frames", 160]
    assert model.opset_import[0].version >= 17


def test_labels_written_for_classification(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("SequenceClassification", None, id2label={0: "yes", 1: "no", 2: "up"})
    out = tmp_path / "a"
    assert run_cli("export", path, "-o", out).exit_code == 0
    meta = {p.key: p.value for p in onnx.load(str(out / "model.fp32.onnx")).metadata_props}
    assert json.loads(meta["w2vbert.labels"]) == {"0": "yes", "1": "no", "2": "up"}


def test_existing_out_needs_force_and_force_replaces(tmp_path):
    out = tmp_path / "a"
    assert run_cli("export", "tiny", "-o", out).exit_code == 0
    before = (out / "manifest.json").read_text()
    result = CliRunner().invoke(main, ["export", "tiny", "-o", str(out)])
    assert result.exit_code != 0 and "already exists; pass --force" in result.output
    assert (out / "manifest.json").read_text() == before
    assert run_cli("export", "tiny", "-o", out, "--force", "--head", "CTC").exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["head"] == "CTC"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


@pytest.mark.parametrize("problem", ["missing_dir", "wrong_model_type", "truncated", "bad_precision"])
def test_bad_sources_fail_cleanly(hf_checkpoint, tmp_path, problem):
    path, _ = hf_checkpoint("Model")
    args = ["export", str(path), "-o", str(tmp_path / "out")]
    if problem == "missing_dir":
        args[1] = str(tmp_path / "missing")
        needle = "neither an existing directory nor a preset"
    elif problem == "wrong_model_type":
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
        needle = "model_type 'bert'"
    elif problem == "truncated":
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[:1000])
        needle = "truncated"
    else:
        args += ["--precision", "int3"]
        needle = "precision 'int3' is unknown"
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))


def test_failed_parity_aborts_with_table_and_leaves_nothing(tmp_path, monkeypatch):
    from exporter.parity import compare as parity

    monkeypatch.setitem(parity.TOLERANCES, "fp32", {"*": 1e-12})
    result = CliRunner().invoke(main, ["export", "tiny", "-o", str(tmp_path / "out")])
    assert result.exit_code == 7
    assert "parity check failed" in result.output and "max_abs=" in result.output and "FAIL" in result.output
    assert list(tmp_path.iterdir()) == []


def test_external_data_goes_to_one_file(tmp_path, monkeypatch):
    from exporter.trace import onnx_io as export_module

    monkeypatch.setattr(export_module, "PROTOBUF_LIMIT", 1)  # force the > 2 GB path on a tiny model
    out = tmp_path / "a"
    assert run_cli("export", "tiny", "-o", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.fp32.cpu.onnx", "model.fp32.onnx",
                                                     "model.fp32.onnx.data"]
    assert (out / "model.fp32.onnx").stat().st_size < 200_000
    # the CPU form (Add + LayerNormalization) reads the same weight file: no second copy
    assert (out / "model.fp32.cpu.onnx").stat().st_size < 200_000
    form = json.loads((out / "manifest.json").read_text())["variants"]["fp32"]["cpu_form"]
    assert form["files"] == ["model.fp32.cpu.onnx", "model.fp32.onnx.data"]
    # all weights exactly once in the data file (no stale copy left by onnxsim's rewrite)
    import onnx as onnx_module

    weights = sum(t.ByteSize() for t in onnx_module.load(str(out / "model.fp32.onnx")).graph.initializer)
    assert (out / "model.fp32.onnx.data").stat().st_size <= 1.1 * weights
    # both files, loaded with their external weights, compute what the PyTorch reference computes
    import torch

    from exporter.model.checkpoint import load_model
    from exporter.parity.compare import tolerance

    features, mask = padded_batch(40)
    with torch.no_grad():
        expected = load_model("tiny")(torch.from_numpy(features), torch.from_numpy(mask))["last_hidden_state"].numpy()
    real = mask.astype(bool)
    for name in ("model.fp32.onnx", "model.fp32.cpu.onnx"):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input_features": features, "attention_mask": mask})[0]
        err = float(np.abs(got - expected)[real].max())
        assert err <= tolerance("fp32", "last_hidden_state"), f"{name}: max abs {err:.2e} against the reference"
    assert json.loads((out / "manifest.json").read_text())["variants"]["fp32"]["files"] == [
        "model.fp32.onnx", "model.fp32.onnx.data"]


def test_verify_and_inspect(tmp_path, hf_checkpoint):
    path, _ = hf_checkpoint("XVector", "relative")
    out = tmp_path / "a"
    assert run_cli("export", path, "-o", out).exit_code == 0
    result = run_cli("verify", out)
    assert result.exit_code == 0 and "parity ok" in result.output
    checked = [line.split()[:2] for line in result.output.splitlines() if " max_abs=" in line]
    # both files verify compares have their own line (the CPU form is what provider "cpu" loads)
    assert checked == [["model.fp32.onnx", "logits"], ["model.fp32.onnx", "embeddings"],
                       ["model.fp32.cpu.onnx", "logits"], ["model.fp32.cpu.onnx", "embeddings"]], result.output
    result = run_cli("inspect", out)
    assert result.exit_code == 0 and "embeddings" in result.output and "XVector" in result.output


def test_stale_staging_dir_of_a_dead_export_is_removed(tmp_path):
    stale = tmp_path / ".a.partial-999999999-abc"
    stale.mkdir()
    (stale / "model.fp32.onnx").write_text("half")
    assert run_cli("export", "tiny", "-o", tmp_path / "a").exit_code == 0
    assert not stale.exists()


def test_help_on_every_command():
    for command in ([], ["export"], ["verify"], ["inspect"]):
        result = run_cli(*command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_xvector_min_frames_is_enforced_and_sufficient(hf_checkpoint, tmp_path):
    from runtime import InputError, Session

    path, _ = hf_checkpoint("XVector", "relative_key", "same")
    out = tmp_path / "a"
    assert run_cli("export", path, "-o", out).exit_code == 0
    session = Session(out)
    n = session.min_frames
    features, _ = padded_batch(n + 5)
    mask = np.ones((3, n + 5), np.int64)
    mask[2, n:] = 0
    assert np.isfinite(session.run(features, mask)["embeddings"]).all()
    mask[2, n - 1:] = 0
    with pytest.raises(InputError, match=f"utterance 2 has {n - 1} real frames; this model needs at least {n}"):
        session.run(features, mask)


def test_benchmark_command_is_registered_by_its_entry_point():
    # exporter never imports benchmarks: the harness adds its command to the group (setup.cfg).
    from importlib.metadata import entry_points

    points = {p.name: p.value for p in entry_points(group="w2vbert.commands")}
    assert points == {"benchmark": "benchmarks.cli:benchmark"}
    assert main.commands["benchmark"].callback.__module__ == "benchmarks.cli"
    result = run_cli("benchmark", "--help")
    assert result.exit_code == 0 and "--durations" in result.output
