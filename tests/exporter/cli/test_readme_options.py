"""Every option README.md's command block lists, through the command line, with the behaviour it
promises (options with tests elsewhere are not repeated here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.model.sources import BUNDLED

SAMPLES = sorted((BUNDLED / "samples").glob("*.wav"))


def run(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from exporter.export import export

    return export(None, tmp_path_factory.mktemp("cli") / "digits")


def _pbtxt(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_triton_name_names_every_model(tmp_path):
    result = run("export", "tiny", "-o", tmp_path / "a", "--triton-repo", tmp_path / "repo", "--triton-name", "enc")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["enc_audio", "enc_fp32"]
    for model in ("enc_audio", "enc_fp32"):
        assert _pbtxt(tmp_path / "repo" / model / "config.pbtxt").name == model


def test_triton_gpu_puts_the_onnx_models_on_gpu_with_the_tensorrt_accelerator(tmp_path):
    result = run("export", "tiny", "-o", tmp_path / "a", "--triton-repo", tmp_path / "repo", "--triton-gpu",
                 "--max-batch", "4")
    assert result.exit_code == 0, result.output
    config = _pbtxt(tmp_path / "repo" / "w2vbert_model_fp32" / "config.pbtxt")
    assert config.max_batch_size == 4 and [g.kind for g in config.instance_group] == [config.instance_group[0].KIND_GPU]
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP32"
    plain = run("export", "tiny", "-o", tmp_path / "b", "--triton-repo", tmp_path / "repo2")
    assert plain.exit_code == 0
    cpu = _pbtxt(tmp_path / "repo2" / "w2vbert_model_fp32" / "config.pbtxt")
    assert [g.kind for g in cpu.instance_group] == [cpu.instance_group[0].KIND_CPU]


@pytest.mark.parametrize("opset", [18, 19, 20])
def test_opset_is_written_and_the_graph_keeps_parity(tmp_path, opset):
    result = run("export", "tiny", "-o", tmp_path / "a", "--opset", opset)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["opset"] == opset
    graph = onnx.load(str(tmp_path / "a" / "model.fp32.onnx"), load_external_data=False)
    assert {o.domain: o.version for o in graph.opset_import}[""] == opset
    assert manifest["variants"]["fp32"]["parity"]["last_hidden_state"]["max_abs"] <= 1e-4
    assert run("verify", tmp_path / "a").exit_code == 0


def test_verify_source_compares_with_that_checkpoint_and_refuses_another(digits, tmp_path):
    copy = Path(shutil.copytree(BUNDLED, tmp_path / "moved"))  # the same checkpoint elsewhere
    result = run("verify", digits, "--source", copy)
    assert result.exit_code == 0 and "fp32 parity ok" in result.output, result.output
    config = json.loads((copy / "config.json").read_text())
    config["layer_norm_eps"] = 1e-3
    (copy / "config.json").write_text(json.dumps(config))
    result = run("verify", digits, "--source", copy)
    assert result.exit_code == 5, result.output
    assert "differs from the artifact's config" in result.output


def test_transcribe_provider_and_batch_size(digits):
    from runtime import Session

    expected = Session(digits).transcribe([str(p) for p in SAMPLES])
    result = run("transcribe", digits, *SAMPLES, "--provider", "cpu", "--batch-size", "2", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert [line.split("\t", 1)[1] for line in result.stdout.splitlines()] == expected
    result = run("transcribe", digits, SAMPLES[0], "--batch-size", "0")
    assert result.exit_code == 2 and "--batch-size" in result.output
    result = run("transcribe", digits, SAMPLES[0], "--provider", "cuda")  # no CUDA here, or anywhere it fell back
    assert result.exit_code == 8 and "CUDAExecutionProvider" in result.output, result.output


def test_debug_shows_the_traceback_that_the_one_line_error_hides(tmp_path):
    plain = run("inspect", tmp_path / "missing")
    assert plain.exit_code == 5 and plain.output.startswith("error: ") and "Traceback" not in plain.output
    debug = run("--debug", "inspect", tmp_path / "missing")
    assert debug.exit_code != 0 and debug.exc_info[0].__name__ == "ArtifactError"


def test_opt_batch_reaches_the_engine_profile(tmp_path, monkeypatch):
    """No GPU here: the plan is stopped where TensorRT would start, and the profile it carries read."""
    import runtime.errors
    import runtime.trt_cache
    from exporter import export as export_module

    seen = {}

    def stop(staging, manifest, precisions, profile, cache_dir=None):
        seen["profile"] = profile
        raise KeyboardInterrupt  # nothing to build here; the staging area is cleaned as after any failure

    monkeypatch.setattr(runtime.errors, "require", lambda *a, **k: None)  # as if TensorRT and a GPU were here
    monkeypatch.setattr(runtime.trt_cache, "gpu_identity", lambda: {})
    monkeypatch.setattr(export_module, "add_engines", stop)
    run("export", "tiny", "-o", tmp_path / "a", "--target", "tensorrt", "--engine", "--opt-batch", "3",
        "--max-batch", "6", "--opt-seconds", "5")
    profile = seen["profile"]
    assert (profile.min_batch, profile.opt_batch, profile.max_batch) == (1, 3, 6) and profile.opt_frames == 250
    assert not (tmp_path / "a").exists()
    result = run("export", "tiny", "-o", tmp_path / "b", "--target", "tensorrt", "--engine", "--opt-batch", "9",
                 "--max-batch", "8")
    assert result.exit_code == 2 and "batch" in result.output, result.output


def test_cli_transcript_is_the_sessions_for_each_file(digits):
    result = run("transcribe", digits, *SAMPLES[:3], "--json")
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    texts = json.loads((BUNDLED / "samples" / "transcripts.json").read_text())
    assert [r["text"] for r in records] == [texts[p.name]["text"] for p in SAMPLES[:3]]
    assert np.all([r["file"] == str(p) for r, p in zip(records, SAMPLES)])
