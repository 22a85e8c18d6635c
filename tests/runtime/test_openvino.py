"""Session(provider="openvino"): our graphs on OpenVINO's CPU plugin, and the bf16 precision it runs.

The oracle is the same artifact on onnxruntime (itself checked against PyTorch) and the PyTorch
reference; tolerances are the contract's (exporter.parity.compare)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from exporter.parity.compare import assert_close, tolerance
from runtime import ArtifactError, InputError, Session
from runtime.errors import DependencyError
from tests.conftest import padded_batch, run_in_threads

pytest.importorskip("openvino", reason="the openvino extra (pip install 'w2vbert-deploy[openvino]')")

from runtime.openvino_runner import has_bf16  # noqa: E402


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The bundled model with fp32 and int8-qdq, and bf16 where this CPU has bf16 units (elsewhere the
    export refuses it: test_bf16_is_refused_without_bf16_units)."""
    from exporter.export import export

    precisions = ("fp32", "bf16", "int8-qdq") if has_bf16() else ("fp32", "int8-qdq")
    return export(None, tmp_path_factory.mktemp("ov") / "digits", precisions=precisions)


def _scaled(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_fp32_on_openvino_matches_onnxruntime_and_the_reference(artifact, tmp_path):
    import torch

    from exporter import load_model

    features, mask = padded_batch(70)
    ov = Session(artifact, provider="openvino", threads=1, cache_dir=tmp_path)
    assert ov.engine.startswith("OpenVINO ") and "fp32 inference precision" in ov.engine, ov.engine
    assert Session(artifact).engine.startswith("onnxruntime ")
    got = ov.run(features, mask)
    assert_close(Session(artifact, threads=1).run(features, mask), got, "fp32")
    with torch.no_grad():
        model = load_model(None)
        expected = model(torch.from_numpy(features), torch.from_numpy(mask))
    assert_close(expected, got, "fp32")


def test_int8_qdq_on_openvino_stays_within_its_tolerance_of_fp32(artifact, tmp_path):
    features, mask = padded_batch(70)
    reference = Session(artifact, threads=1).run(features, mask)["logits"]
    got = Session(artifact, precision="int8-qdq", provider="openvino", threads=1, cache_dir=tmp_path)
    error = _scaled(got.run(features, mask)["logits"], reference)
    assert 0 < error <= tolerance("int8-qdq", "logits"), error


def test_bf16_variant_is_fp32s_file_gated_and_run_on_openvino_only(artifact, tmp_path):
    manifest = json.loads((artifact / "manifest.json").read_text())
    if not has_bf16():
        assert "bf16" not in manifest["variants"]
        return
    entry, fp32 = manifest["variants"]["bf16"], manifest["variants"]["fp32"]
    assert entry["file"] == fp32["file"] and entry["files"] == fp32["files"] and entry["engine"] == "openvino"
    assert entry["gate"]["passed"] and entry["gate"]["thresholds"]["min_cosine"] == 0.999
    assert not (artifact / "model.bf16.onnx").exists()
    with pytest.raises(InputError, match="runs on OpenVINO only"):
        Session(artifact, precision="bf16")
    session = Session(artifact, precision="bf16", provider="openvino", threads=1, cache_dir=tmp_path)
    assert "bf16 inference precision" in session.engine, session.engine
    features, mask = padded_batch(70)
    reference = Session(artifact, threads=1).run(features, mask)["logits"]
    error = _scaled(session.run(features, mask)["logits"], reference)
    assert 0 < error <= tolerance("bf16", "logits"), error  # 0 would mean it ran in f32


def test_bf16_is_refused_without_bf16_units(monkeypatch, tmp_path):
    """Where OpenVINO would silently run f32 (no AVX512_BF16 / AMX), bf16 is refused in one line."""
    import runtime.openvino_runner as runner

    monkeypatch.setattr(runner, "has_bf16", lambda: False)
    from runtime.precisions import PRECISIONS

    with pytest.raises(DependencyError, match="bf16 needs a CPU with bf16 units"):
        runner.OpenVINORunner(tmp_path / "x.onnx", PRECISIONS["bf16"].openvino_hint, 1, None)


def test_precisions_openvino_does_not_run_are_refused_with_the_ones_it_does(artifact):
    with pytest.raises(InputError, match=r"precision 'fp16' does not run on OpenVINO; it runs fp32, int8-qdq, bf16"):
        Session(artifact, precision="fp16", provider="openvino")


def test_the_raw_audio_variant_matches_onnxruntime_on_speech(tmp_path):
    """On speech the front end agrees to fp32's tolerance. (A pure sine is ill-conditioned for both
    engines: its mel energies span 13 orders of magnitude, and the log of the smallest differs by 0.13
    between two correct float32 DFTs.)"""
    from exporter.export import export
    from exporter.model.sources import BUNDLED
    from runtime.audio import load_audio

    artifact = export(None, tmp_path / "art", with_frontend=True)
    ov = Session(artifact, precision="fp32-frontend", provider="openvino", threads=1, cache_dir=tmp_path / "c")
    ort = Session(artifact, precision="fp32-frontend", threads=1)
    for path in sorted((BUNDLED / "samples").glob("*.wav"))[:2]:
        wave = load_audio(path)[None]
        assert_close(ort.run_frontend(wave), ov.run_frontend(wave), "fp32-frontend")


def test_threads_are_honoured_and_the_compiled_model_is_cached(artifact, tmp_path):
    one = Session(artifact, provider="openvino", threads=1, cache_dir=tmp_path)
    assert int(one._engine._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    two = Session(artifact, provider="openvino", threads=2, cache_dir=tmp_path)
    assert int(two._engine._compiled.get_property("INFERENCE_NUM_THREADS")) == 2
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(folders) == 1 and any(f.stat().st_size > 0 for f in folders[0].iterdir())  # the blob
    Session(artifact, precision="int8-qdq", provider="openvino", threads=1, cache_dir=tmp_path)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2  # one folder per variant


def test_one_session_serves_threads(artifact, tmp_path):
    session = Session(artifact, provider="openvino", threads=1, cache_dir=tmp_path)
    inputs = [padded_batch(40 + 7 * i, seed=i) for i in range(6)]
    expected = [session.run(f, m)["logits"] for f, m in inputs]

    def work(i):
        for _ in range(3):
            np.testing.assert_array_equal(session.run(*inputs[i])["logits"], expected[i])
    run_in_threads(work, [(i,) for i in range(6)])


def test_input_checks_and_guards_are_the_sessions(artifact, tmp_path):
    session = Session(artifact, provider="openvino", threads=1, cache_dir=tmp_path)
    with pytest.raises(InputError, match="160"):
        session.run(np.zeros((1, 50, 80), np.float32))
    features, _ = padded_batch(40)
    with pytest.raises(InputError, match="NaN"):
        session.run(np.where(features > 1, np.nan, features).astype(np.float32))
    session.close()
    with pytest.raises(ArtifactError, match="closed"):
        session.run(features)


def test_a_swapped_file_is_caught_without_verify(artifact, tmp_path):
    """verify=False skips the sha256, so the graph's own metadata is checked against the manifest."""
    import shutil

    copy = tmp_path / "art"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["head"] = "SequenceClassification"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="head"):
        Session(copy, provider="openvino", verify=False, cache_dir=tmp_path / "cache")


def test_missing_openvino_is_one_clear_error(artifact, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(DependencyError, match=r"pip install 'w2vbert-deploy\[openvino\]'"):
        Session(artifact, provider="openvino")


def test_transcribe_and_verify_through_the_cli(artifact, tmp_path):
    from exporter.cli import main
    from exporter.model.sources import BUNDLED

    samples = sorted(str(p) for p in (BUNDLED / "samples").glob("*.wav"))
    on_cpu = CliRunner().invoke(main, ["transcribe", str(artifact), *samples])
    on_ov = CliRunner().invoke(main, ["transcribe", str(artifact), *samples, "--provider", "openvino"])
    assert on_cpu.exit_code == 0 and on_ov.exit_code == 0, on_ov.output
    texts = [line for line in on_ov.output.splitlines() if "\t" in line]
    assert on_ov.output == on_cpu.output and len(texts) == len(samples) and all(t.split("\t")[1] for t in texts)
    verified = CliRunner().invoke(main, ["verify", str(artifact), "--backend", "openvino"])
    assert verified.exit_code == 0, verified.output
    lines = [line for line in verified.output.splitlines() if " ok (openvino)" in line]
    expected = ["fp32 parity", *(["bf16 gate"] if has_bf16() else []), "int8-qdq gate"]
    assert [line.split(": ", 1)[1].removesuffix(" ok (openvino)") for line in lines] == expected, verified.output


def test_auto_picks_the_measured_engine_per_cpu_kind(artifact, tmp_path):
    from runtime.engine_choice import FASTEST, auto_provider, cpu_flags, cpu_kind

    amx = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
    assert cpu_kind(amx) == "amx" and cpu_kind({"avx2", "avx512_bf16"}) == "avx512_bf16"
    assert cpu_kind({"avx2", "fma"}) == "other" and cpu_kind(set()) == "other"
    assert auto_provider("int8-qdq", amx, openvino=True) == "openvino"
    assert auto_provider("int8-qdq", amx, openvino=False) == "cpu"  # the rule needs the extra installed
    assert auto_provider("int8-qdq", {"avx2"}, openvino=True) == "cpu"
    assert auto_provider("int8-qdq", {"avx2", "avx512_bf16"}, openvino=True) == "openvino"
    assert auto_provider("fp32", amx | {"avx512_bf16"}, openvino=True) == "cpu"  # a tie: stays on onnxruntime
    assert auto_provider("int8", amx, openvino=True) == "cpu"  # dynamic int8: onnxruntime's operators only
    assert auto_provider("bf16", {"avx2"}, openvino=False) == "openvino"  # only OpenVINO runs it (or refuses)
    assert auto_provider("fp32-frontend", amx, openvino=True) == "cpu"
    here = FASTEST[cpu_kind(cpu_flags())].get("int8-qdq", "cpu")
    session = Session(artifact, precision="int8-qdq", provider="auto", threads=1, cache_dir=tmp_path)
    assert session.provider == here and session.engine.startswith("OpenVINO" if here == "openvino" else "onnxruntime")


def test_pipeline_runs_on_openvino_with_the_same_transcripts(artifact):
    from exporter.model.sources import BUNDLED
    from runtime import pipeline
    from runtime.audio import load_audio

    waves = [load_audio(p) for p in sorted((BUNDLED / "samples").glob("*.wav"))[:3]]
    on_ov = pipeline("automatic-speech-recognition", model=artifact, provider="openvino", threads=1)
    on_cpu = pipeline("automatic-speech-recognition", model=artifact, threads=1)
    assert on_ov.session.provider == "openvino" and on_ov.session.engine.startswith("OpenVINO")
    assert [on_ov(w)["text"] for w in waves] == [on_cpu(w)["text"] for w in waves]
    assert all(on_cpu(w)["text"] for w in waves)
