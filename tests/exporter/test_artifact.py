"""exporter.artifact on its own: the manifest's fields, the metadata a bare .onnx carries, file
records and permissions, and the staging directory's atomic swap and its repair after a kill."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from exporter.artifact import (
    PREPROCESSOR_DEFAULTS,
    build_manifest,
    copy_side_files,
    finish_manifest,
    io_spec,
    onnx_metadata,
    preprocessor_params,
    remove_stale_staging,
    staged_output,
    tool_versions,
    variant_entry,
)
from exporter.model.presets import preset_config
from runtime.errors import ExportError, OptionError
from runtime.manifest import SCHEMA, SCHEMA_VERSION, file_sha256


def test_preprocessor_defaults_and_a_checkpoints_own(tmp_path):
    assert preprocessor_params(None) == PREPROCESSOR_DEFAULTS
    assert PREPROCESSOR_DEFAULTS == {
        "feature_extractor_type": "SeamlessM4TFeatureExtractor", "sampling_rate": 16000, "feature_size": 80,
        "num_mel_bins": 80, "stride": 2, "padding_value": 0.0, "padding_side": "right",
        "return_attention_mask": True, "do_normalize_per_mel_bins": True}
    assert preprocessor_params(tmp_path) == PREPROCESSOR_DEFAULTS  # no file: the defaults
    (tmp_path / "preprocessor_config.json").write_text('{"sampling_rate": 8000, "extra": 1}')
    params = preprocessor_params(tmp_path)
    assert params["sampling_rate"] == 8000 and params["extra"] == 1 and params["stride"] == 2
    (tmp_path / "preprocessor_config.json").write_text("{")
    with pytest.raises(ExportError, match=r"^.*preprocessor_config.json is not valid JSON: Expecting"):
        preprocessor_params(tmp_path)


def test_io_spec_of_each_head():
    config = preset_config("tiny")
    inputs, outputs = io_spec(config, "XVector")
    assert inputs == [{"name": "input_features", "dtype": "float32", "shape": ["batch", "frames", 160]},
                      {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "frames"]}]
    assert [o["name"] for o in outputs] == ["logits", "embeddings"] and all(o["dtype"] == "float32" for o in outputs)
    assert [o["name"] for o in io_spec(config, "Model")[1]] == ["last_hidden_state"]


def test_tool_versions_name_what_is_installed():
    import importlib.metadata

    versions = tool_versions(("pytest", "no-such-distribution"))
    assert versions["pytest"] == importlib.metadata.version("pytest") and "no-such-distribution" not in versions
    assert list(versions)[:2] == ["w2vbert-deploy", "torch"] and versions["torch"].startswith("2.")


def test_manifest_fields(tmp_path):
    config = preset_config("tiny")
    variants = {"fp32": variant_entry("model.fp32.onnx", ["model.fp32.onnx"], "ort", "fp32", parity={"x": 1})}
    manifest = build_manifest(config, "CTC", "tiny", 18, {"stride": 2}, variants, ["vocab.json"])
    assert manifest["schema"] == SCHEMA and manifest["schema_version"] == SCHEMA_VERSION
    assert (manifest["source"], manifest["head"], manifest["opset"]) == ("tiny", "CTC", 18)
    assert manifest["config"] == config.to_dict() and manifest["preprocessor"] == {"stride": 2}
    assert manifest["vocab_file"] == "vocab.json" and manifest["labels"] is None and manifest["files"] == {}
    assert manifest["min_frames"] == 1 and manifest["output_length_formula"] == "out = frames"
    assert manifest["variants"] == variants and manifest["created"].endswith("+00:00")
    assert manifest["versions"] == tool_versions() and manifest["machine"]["int8_kernel"]
    assert list(variants["fp32"]) == ["file", "files", "target", "precision", "parity"]
    labelled = build_manifest(config, "SequenceClassification", "tiny", 17, {}, {}, [])
    assert labelled["labels"] == config.to_dict()["id2label"] and labelled["vocab_file"] is None


def test_onnx_metadata_describes_the_model(tmp_path):
    manifest = build_manifest(preset_config("tiny"), "CTC", "tiny", 17, {"stride": 2}, {}, ["vocab.json"])
    meta = onnx_metadata(manifest, precision="fp32")
    assert meta["w2vbert.head"] == "CTC" and meta["w2vbert.vocab_file"] == "vocab.json"
    assert json.loads(meta["w2vbert.config"]) == manifest["config"] and meta["w2vbert.precision"] == "fp32"
    assert json.loads(meta["w2vbert.inputs"]) == manifest["inputs"] and meta["w2vbert.min_frames"] == "1"
    assert meta["w2vbert.schema_version"] == str(SCHEMA_VERSION) and json.loads(meta["w2vbert.labels"]) is None
    assert set(meta) == {f"w2vbert.{k}" for k in ("head", "preprocessor", "output_length_formula", "min_frames",
                                                  "labels", "vocab_file", "inputs", "outputs", "config",
                                                  "schema_version", "precision")}


def test_finish_manifest_lists_every_file_readable_by_all(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.onnx").write_bytes(b"graph")
    (tmp_path / "sub" / "w.data").write_bytes(b"weights")
    (tmp_path / "sub" / "w.data").chmod(0o600)  # as onnx writes external data
    manifest = {"files": {"stale": {}}}
    old = os.umask(0o022)
    try:
        finish_manifest(tmp_path, manifest)
    finally:
        os.umask(old)
    assert manifest["files"] == {"model.onnx": {"sha256": file_sha256(tmp_path / "model.onnx"), "bytes": 5},
                                 "sub/w.data": {"sha256": file_sha256(tmp_path / "sub" / "w.data"), "bytes": 7}}
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert (tmp_path / "manifest.json").read_text().startswith('{\n  "files"')
    assert stat.S_IMODE((tmp_path / "sub" / "w.data").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o755


def test_copy_side_files_copies_those_present(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "ckpt" / "vocab.json").write_text("{}")
    assert copy_side_files(tmp_path / "ckpt", tmp_path / "out", ("vocab.json", "missing.json")) == ["vocab.json"]
    assert (tmp_path / "out" / "vocab.json").read_text() == "{}"
    assert copy_side_files(None, tmp_path / "out", ("vocab.json",)) == []


def test_staged_output_replaces_only_on_success(tmp_path):
    out = tmp_path / "art"
    with staged_output(out) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(f".art.partial-{os.getpid()}-")
        (staging / "a").write_text("first")
    assert (out / "a").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    with pytest.raises(RuntimeError):
        with staged_output(out) as staging:
            (staging / "a").write_text("broken")
            raise RuntimeError("a check failed")
    assert (out / "a").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    with staged_output(out) as staging:
        (staging / "b").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b"] and sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_staged_output_without_an_atomic_exchange(tmp_path, monkeypatch):
    from exporter import artifact

    monkeypatch.setattr(artifact, "_exchange", lambda a, b: False)  # filesystems without renameat2
    out = tmp_path / "art"
    for text in ("first", "second"):
        with staged_output(out) as staging:
            (staging / "a").write_text(text)
        assert (out / "a").read_text() == text and sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_staging_that_cannot_be_made_is_one_option_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionError, match=r"^cannot write the artifact next to .*file/art: "):
        with staged_output(tmp_path / "file" / "art"):
            pass


def test_stale_staging_of_dead_exports_is_removed_and_a_moved_artifact_restored(tmp_path):
    out = tmp_path / "art"
    dead = tmp_path / ".art.partial-999999999-abc"  # no such process
    alive = tmp_path / f".art.partial-{os.getpid()}-xyz"
    odd = tmp_path / ".art.partial-name"
    for folder in (dead, alive, odd):
        folder.mkdir()
    moved = tmp_path / ".art.old-123"
    (moved / "art").mkdir(parents=True)
    (moved / "art" / "a").write_text("previous")
    remove_stale_staging(out)
    assert (out / "a").read_text() == "previous"  # the kill came between the two renames
    assert not dead.exists() and not moved.exists() and alive.exists() and odd.exists()
    again = tmp_path / ".art.old-456"
    (again / "art").mkdir(parents=True)
    remove_stale_staging(out)  # OUT exists now: an old copy is only removed
    assert not again.exists() and (out / "a").read_text() == "previous"


def test_pid_alive_for_processes_of_others():
    from exporter.artifact import _pid_alive

    assert _pid_alive(os.getpid()) and not _pid_alive(999_999_999)
    assert _pid_alive(1)  # init: alive, whoever owns it


def test_exchange_swaps_two_directories(tmp_path):
    from exporter.artifact import _exchange

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert _exchange(a, b) is True
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"
    assert _exchange(a, tmp_path / "missing") is False
    assert Path(a).is_dir()
