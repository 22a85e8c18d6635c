"""TensorRT path: everything checkable without a GPU runs here; engine builds are marked
`tensorrt` / `gpu` and skip with their reason where no NVIDIA GPU and TensorRT exist."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.export import export
from runtime import Session
from runtime.errors import ArtifactError, DependencyError, InputError, OptionError
from runtime.manifest import file_entry
from runtime.providers import provider_options
from runtime.trt_cache import engine_cache_key
from runtime.trt_profile import ShapeProfile, check_in_profile

from ...conftest import padded_batch

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_GPU = shutil.which("nvidia-smi") is not None
needs_trt = pytest.mark.skipif(not (HAVE_TRT and HAVE_GPU),
                               reason="needs an NVIDIA GPU (nvidia-smi) and TensorRT (pip install '.[gpu]')")


@pytest.fixture(scope="module")
def trt_artifact(tmp_path_factory):
    return export("tiny", tmp_path_factory.mktemp("trt") / "art", head="CTC", target="tensorrt")


def test_profile_from_seconds_and_bounds():
    profile = ShapeProfile.from_seconds()
    assert (profile.min_frames, profile.opt_frames, profile.max_frames) == (50, 500, 1500)
    assert (profile.min_batch, profile.opt_batch, profile.max_batch) == (1, 1, 8)
    assert ShapeProfile.from_seconds(0.01, 0.02, 1, model_min_frames=7).min_frames == 7
    assert profile.shapes(160)["input_features"] == [[1, 50, 160], [1, 500, 160], [8, 1500, 160]]
    assert profile.shapes(160)["attention_mask"][2] == [8, 1500]
    with pytest.raises(InputError, match="profile frames: need 1 <= min <= opt <= max, got 500, 50, 1500"):
        ShapeProfile.from_seconds(10, 1, 30)
    with pytest.raises(InputError, match="profile batch"):
        ShapeProfile.from_seconds(opt_batch=9, max_batch=8)


def test_calls_outside_the_profile_are_named():
    profile = ShapeProfile.from_seconds().to_dict()
    check_in_profile(8, 1500, profile)
    with pytest.raises(InputError, match=r"frames 1501 is outside this TensorRT engine's profile \[50, 1500\]"):
        check_in_profile(1, 1501, profile)
    with pytest.raises(InputError, match=r"batch 9 .*\[1, 8\].*--max-batch"):
        check_in_profile(9, 100, profile)


def test_engine_cache_key_covers_every_field():
    base = dict(onnx_sha256="a" * 64, trt_version="10.15.1", gpu_name="NVIDIA H100", compute_capability="9.0",
                precision="fp16", profile=ShapeProfile().to_dict())
    key = engine_cache_key(**base)
    assert key == engine_cache_key(**base) and len(key) == 32
    changed = {"onnx_sha256": "b" * 64, "trt_version": "10.16.0", "gpu_name": "NVIDIA L4",
               "compute_capability": "8.9", "precision": "int8", "profile": ShapeProfile(max_batch=4).to_dict()}
    keys = {engine_cache_key(**{**base, field: value}) for field, value in changed.items()}
    assert len(keys) == len(changed) and key not in keys


def test_provider_options(tmp_path):
    assert provider_options("cpu", "fp32", tmp_path) == [("CPUExecutionProvider", {})]
    cuda = provider_options("cuda", "fp32", tmp_path)
    assert [name for name, _ in cuda] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    profile = ShapeProfile().to_dict()
    trt = provider_options("tensorrt", "fp16", tmp_path, profile, 160)
    assert [name for name, _ in trt] == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                         "CPUExecutionProvider"]
    options = trt[0][1]
    assert options["trt_fp16_enable"] and not options["trt_int8_enable"]
    assert options["trt_engine_cache_enable"] and options["trt_engine_cache_path"] == str(tmp_path)
    assert options["trt_timing_cache_path"] == str(tmp_path)
    assert options["trt_profile_max_shapes"] == "input_features:8x1500x160,attention_mask:8x1500"
    qdq = provider_options("tensorrt", "int8-qdq", tmp_path)[0][1]
    assert qdq["trt_int8_enable"] and "trt_profile_min_shapes" not in qdq
    assert not provider_options("tensorrt", "fp32", tmp_path)[0][1]["trt_fp16_enable"]


@pytest.mark.skipif(HAVE_GPU, reason="checks the message shown where no GPU provider exists")
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_providers_missing_say_how_to_install(trt_artifact, provider):
    with pytest.raises(DependencyError, match=r"w2vbert-deploy\[gpu\]"):
        Session(trt_artifact, provider=provider)


def test_trt_engine_provider_errors(trt_artifact, tmp_path):
    with pytest.raises(ArtifactError, match="has no 'fp32' TensorRT engine .*--engine"):
        Session(trt_artifact, provider="trt-engine")
    with pytest.raises(ArtifactError, match="needs an artifact directory"):
        Session(trt_artifact / "model.fp32.onnx", provider="trt-engine")
    if HAVE_TRT:
        return
    fake = tmp_path / "art"
    shutil.copytree(trt_artifact, fake)
    (fake / "model.fp32.plan").write_bytes(b"not a plan")
    manifest = json.loads((fake / "manifest.json").read_text())
    manifest["files"]["model.fp32.plan"] = file_entry(fake / "model.fp32.plan")
    manifest["engines"] = {"fp32": {"file": "model.fp32.plan", "files": ["model.fp32.plan"],
                                    "profile": ShapeProfile().to_dict()}}
    (fake / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DependencyError, match=r"tensorrt.*w2vbert-deploy\[gpu\]"):
        Session(fake, provider="trt-engine")


def test_engine_export_refusals_leave_nothing(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["export", "tiny", "-o", str(tmp_path / "a"), "--engine"])
    assert result.exit_code == OptionError.exit_code and "--engine needs --target tensorrt" in result.output
    result = runner.invoke(main, ["export", "tiny", "-o", str(tmp_path / "b"), "--target", "tensorrt", "--engine",
                                  "--min-seconds", "20", "--opt-seconds", "10"])
    assert result.exit_code == InputError.exit_code and "profile frames" in result.output
    if not (HAVE_TRT and HAVE_GPU):
        result = runner.invoke(main, ["export", "tiny", "-o", str(tmp_path / "c"), "--target", "tensorrt",
                                      "--engine"])
        assert result.exit_code == DependencyError.exit_code and "w2vbert-deploy[gpu]" in result.output
        assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_verify_engine_backend_without_engine(trt_artifact):
    result = CliRunner().invoke(main, ["verify", str(trt_artifact), "--backend", "tensorrt"])
    assert result.exit_code == ArtifactError.exit_code and "no 'fp32' TensorRT engine" in result.output


# ---------------------------------------------------------------- needs the GPU machine
@pytest.mark.gpu
@pytest.mark.tensorrt
@needs_trt
def test_build_engines_verify_and_cache(tmp_path):
    from exporter.verify import verify_artifact

    cache = tmp_path / "cache"
    out = export("tiny", tmp_path / "art", head="CTC", target="tensorrt", precisions=("fp32", "fp16", "int8-qdq"),
                 engine=dict(min_seconds=1, opt_seconds=5, max_seconds=20, max_batch=4), engine_cache=cache)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["engines"]) == ["fp16", "fp32", "int8"]
    for precision in ("fp32", "fp16", "int8"):
        rows = verify_artifact(out, precision=precision, backend="tensorrt")
        assert all(r.ok for r in rows)
    session = Session(out, precision="fp16", provider="trt-engine")
    features, mask = padded_batch(120)
    assert np.isfinite(session.run(features, mask)["logits"]).all()
    with pytest.raises(InputError, match="outside this TensorRT engine's profile"):
        session.run(*padded_batch(1001))
    plans = sorted(cache.glob("*.plan"))
    again = export("tiny", tmp_path / "again", head="CTC", target="tensorrt", precisions=("fp32",),
                   engine=dict(min_seconds=1, opt_seconds=5, max_seconds=20, max_batch=4), engine_cache=cache)
    assert sorted(cache.glob("*.plan")) == plans  # cache hit: nothing rebuilt
    assert json.loads((again / "manifest.json").read_text())["engines"]["fp32"]["cache_key"] == \
        manifest["engines"]["fp32"]["cache_key"]


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_GPU, reason="needs an NVIDIA GPU and onnxruntime-gpu (pip install '.[gpu]')")
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_ort_gpu_providers_match_cpu(trt_artifact, provider, tmp_path):
    from exporter.parity.compare import compare

    features, mask = padded_batch(90)
    cpu = Session(trt_artifact).run(features, mask)
    gpu = Session(trt_artifact, provider=provider, cache_dir=tmp_path).run(features, mask)
    rows = compare(cpu, gpu, "engine-fp32")
    assert all(r.ok for r in rows), "\n".join(r.row() for r in rows)
