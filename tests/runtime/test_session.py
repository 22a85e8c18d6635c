from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import ArtifactError, InputError, Session
from runtime.errors import W2VBertError
from tests.conftest import padded_batch, run_in_threads


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from exporter.export import export

    return export("tiny", tmp_path_factory.mktemp("art") / "tiny", head="CTC")


@pytest.fixture(scope="module")
def session(artifact):
    return Session(artifact, threads=1)


def test_run_matches_reference(session):
    import torch

    from exporter import load_model
    from exporter.parity.compare import assert_close

    features, mask = padded_batch(45)
    with torch.no_grad():
        expected = load_model("tiny", head="CTC")(torch.from_numpy(features), torch.from_numpy(mask))
    assert_close(expected, session.run(features, mask), "fp32")


def test_bare_onnx_is_self_describing(artifact, session):
    assert session.path.name == "model.fp32.cpu.onnx"  # provider "cpu" loads the variant's CPU form
    features, mask = padded_batch(30)
    expected = session.run(features, mask)["logits"]
    bare = Session(artifact / "model.fp32.cpu.onnx")
    assert bare.head == "CTC" and bare.config == session.config
    np.testing.assert_array_equal(bare.run(features, mask)["logits"], expected)
    fused = Session(artifact / "model.fp32.onnx")  # SkipLayerNormalization: the same math, other rounding
    np.testing.assert_allclose(fused.run(features, mask)["logits"], expected, atol=1e-5)


def test_float64_non_contiguous_and_read_only_inputs(session):
    features, mask = padded_batch(30)
    expected = session.run(features, mask)["logits"]
    wide = np.asfortranarray(features.astype(np.float64))
    mask.setflags(write=False)
    np.testing.assert_allclose(session.run(wide, mask.astype(bool))["logits"], expected, atol=1e-6)


def test_no_mask_means_all_frames_real(session):
    features, _ = padded_batch(30)
    ones = np.ones(features.shape[:2], np.int64)
    np.testing.assert_array_equal(session.run(features)["logits"], session.run(features, ones)["logits"])


@pytest.mark.parametrize("features,mask,needle", [
    (np.zeros((10, 160), np.float32), None, r"rank 3 .* got shape \(10, 160\) \(add a batch axis"),
    (np.zeros((1, 10, 80), np.float32), None, r"last axis must be 160 .* got shape \(1, 10, 80\)"),
    (np.zeros((1, 10, 160), np.int16), None, "must be floating point .* got int16"),
    (np.zeros((1, 0, 160), np.float32), None, "empty"),
    (np.full((1, 10, 160), np.nan, np.float32), None, r"1600 NaN/Inf values \(first at \(0, 0, 0\)\)"),
    (np.zeros((2, 10, 160), np.float32), np.ones((2, 9), np.int64), r"shape \(2, 9\) does not match"),
    (np.zeros((1, 10, 160), np.float32), np.ones((1, 10), np.float32), "must be integer or bool"),
    (np.zeros((1, 10, 160), np.float32), np.full((1, 10), 2), "only 0 and 1"),
    (np.zeros((1, 4, 160), np.float32), np.array([[0, 1, 1, 1]]), "not right-padded"),
    (np.zeros((2, 4, 160), np.float32), np.array([[1, 1, 1, 1], [0, 0, 0, 0]]), "utterance 1 has 0 real frames"),
    ("text", None, "must be a numpy array"),
])
def test_bad_input_is_named(session, features, mask, needle):
    with pytest.raises(InputError, match=needle):
        session.run(features, mask)


def test_threads_share_one_session(session):
    """8 threads x 50 calls of mixed lengths and batch sizes give exactly the serial results."""
    inputs = [padded_batch(n, seed=n) for n in (9, 20, 33, 47, 61, 90, 128)]
    inputs += [(f[:1], m[:1]) for f, m in inputs[:3]]  # batch 1 too
    serial = [session.run(f, m)["logits"] for f, m in inputs]
    results = {}

    def worker(k):
        for i in range(50):
            j = (k * 7 + i) % len(inputs)
            results[(k, i)] = (j, session.run(*inputs[j])["logits"])

    run_in_threads(worker, [(k,) for k in range(8)], timeout=300)
    assert len(results) == 400
    for j, value in results.values():
        np.testing.assert_array_equal(value, serial[j])


@pytest.mark.parametrize("name", ["model.fp32.cpu.onnx", "model.fp32.onnx"])
def test_tampered_and_missing_files(artifact, tmp_path, name):
    import shutil

    from runtime.manifest import load_manifest

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)

    def load():  # a Session checks the files of the form its provider loads; verify checks them all
        if name == "model.fp32.cpu.onnx":
            return Session(copy)
        with pytest.raises(ArtifactError):
            load_manifest(copy).verify()
        return Session(copy, provider="cuda")  # the fused graph: checked before the provider is asked for
    data = bytearray((copy / name).read_bytes())
    data[-100] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        load()
    (copy / name).write_bytes(bytes(data[:1000]))
    with pytest.raises(ArtifactError, match="truncated or replaced"):
        load()
    (copy / name).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load()


def test_artifact_without_cpu_form_loads_its_variant(artifact, session, tmp_path):
    import shutil

    copy = tmp_path / "copy"  # as written before CPU forms existed
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["variants"]["fp32"]["cpu_form"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    old = Session(copy)
    assert old.path.name == "model.fp32.onnx"
    features, mask = padded_batch(30)
    np.testing.assert_allclose(old.run(features, mask)["logits"], session.run(features, mask)["logits"], atol=1e-5)


def test_manifest_problems(artifact, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    with pytest.raises(ArtifactError, match="no 'fp16' variant; it has: fp32"):
        Session(copy, precision="fp16")
    (copy / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ArtifactError, match="schema_version 99"):
        Session(copy)
    escaped = dict(manifest)
    escaped["variants"] = {"fp32": {**manifest["variants"]["fp32"], "file": "../evil.onnx"}}
    (copy / "manifest.json").write_text(json.dumps(escaped))
    with pytest.raises(ArtifactError, match="outside"):
        Session(copy, verify=False, provider="cuda")  # refused before onnxruntime is asked for CUDA
    escaped["variants"]["fp32"]["cpu_form"] = {**manifest["variants"]["fp32"]["cpu_form"], "file": "../evil.onnx"}
    (copy / "manifest.json").write_text(json.dumps(escaped))
    with pytest.raises(ArtifactError, match="outside"):
        Session(copy, verify=False)
    (copy / "manifest.json").write_text("{")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Session(copy)
    with pytest.raises(ArtifactError, match="does not exist"):
        Session(tmp_path / "nothing")


def test_unknown_provider_and_threads(artifact):
    with pytest.raises(W2VBertError, match="provider 'tpu' is unknown"):
        Session(artifact, provider="tpu")
    with pytest.raises(W2VBertError, match="CUDAExecutionProvider"):
        Session(artifact, provider="cuda")
    with pytest.raises(InputError, match="threads must be >= 1"):
        Session(artifact, threads=0)


def test_external_data_escaping_the_artifact_is_refused(tmp_path):
    """An .onnx whose external-data location points outside its directory never loads, even unverified."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(160, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["input_features", "w"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, [1, 4, 160])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 160])], [weight])
    (tmp_path / "outside").mkdir()
    (tmp_path / "art").mkdir()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(tmp_path / "outside" / "m.onnx"), save_as_external_data=True,
                    location="secret.data", size_threshold=0)
    model = onnx.load(str(tmp_path / "outside" / "m.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../outside/secret.data"
    onnx.save(model, str(tmp_path / "art" / "m.onnx"))
    with pytest.raises(ArtifactError, match="escapes model directory"):
        Session(tmp_path / "art" / "m.onnx", verify=False)
