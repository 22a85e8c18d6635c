"""The TensorRT path's logic on the CPU, with tensorrt and polygraphy faked:
no GPU has run this code; these tests pin what the code hands to TensorRT and what it does with the answers."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import DependencyError, ExportError
from runtime.precisions import PRECISIONS
from runtime.trt_cache import engine_cache_key, files_digest, gpu_identity, timing_cache_name
from runtime.trt_profile import ShapeProfile, engine_profile
from tests.conftest import run_in_threads


def fake_module(monkeypatch, name: str, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


class FakeRunner:
    """polygraphy's TrtRunner as it behaves: one host buffer per output, rewritten by each call."""

    def __init__(self, engine):
        self.buffer = np.zeros((1, 3), np.float32)
        self.inside = 0
        self.active = False

    def activate(self):
        self.active = True

    def deactivate(self):
        self.active = False

    def infer(self, feeds, copy_outputs_to_host=True):
        self.inside += 1
        assert self.inside == 1, "two threads inside one execution context"
        time.sleep(0.01)
        self.buffer[:] = feeds["input_features"].sum()
        self.inside -= 1
        return {"last_hidden_state": self.buffer}


@pytest.fixture
def engine_runner(monkeypatch, tmp_path):
    from runtime.trt_engine import EngineRunner

    fake_module(monkeypatch, "tensorrt")
    fake_module(monkeypatch, "polygraphy")
    fake_module(monkeypatch, "polygraphy.backend")
    fake_module(monkeypatch, "polygraphy.backend.trt", engine_from_bytes=lambda data: "engine", TrtRunner=FakeRunner)
    (tmp_path / "model.fp32.plan").write_bytes(b"plan")
    profile = ShapeProfile(1, 1, 4, 1, 10, 20).to_dict()
    return EngineRunner(tmp_path / "model.fp32.plan", {"profile": profile})


def feeds(value: float):
    return {"input_features": np.full((1, 5, 160), value / 800, np.float32),
            "attention_mask": np.ones((1, 5), np.int64)}


def test_engine_outputs_survive_the_next_call(engine_runner):
    first = engine_runner.run(feeds(1.0))["last_hidden_state"]
    second = engine_runner.run(feeds(2.0))["last_hidden_state"]
    assert first[0, 0] == pytest.approx(1.0) and second[0, 0] == pytest.approx(2.0)


def test_one_engine_context_serves_one_thread_at_a_time(engine_runner):
    def call(i):
        out = engine_runner.run(feeds(float(i)))["last_hidden_state"]
        assert out[0, 0] == pytest.approx(float(i))

    run_in_threads(call, [(i,) for i in range(8)], timeout=30)


def test_closed_engine_says_so(engine_runner):
    from runtime.errors import ArtifactError

    engine_runner.close()
    engine_runner.close()  # twice is fine
    with pytest.raises(ArtifactError, match="was closed"):
        engine_runner.run(feeds(1.0))


def test_profile_of_an_int8_qdq_variant_is_the_int8_plans():
    data = {"engines": {"int8": {"profile": {"max_batch": 4}}, "fp32": {"profile": {"max_batch": 8}}}}
    assert PRECISIONS["int8-qdq"].plan == "int8"
    assert engine_profile(data, "int8-qdq") == {"max_batch": 4}
    assert engine_profile(data, "fp32") == {"max_batch": 8}
    assert engine_profile(data, "fp16") is None and engine_profile({}, "fp32") is None


def test_cache_keys_cover_the_weights_and_timing_caches_the_gpu():
    graph = {"model.fp32.onnx": "a" * 64}
    one = files_digest({**graph, "model.fp32.onnx.data": "b" * 64})
    other = files_digest({**graph, "model.fp32.onnx.data": "c" * 64})
    assert one != other  # two checkpoints of one architecture: same graph, other weights
    assert files_digest({"x": "1", "y": "2"}) == files_digest({"y": "2", "x": "1"})
    keys = {engine_cache_key(d, "10.16.0", "H200", "9.0", "fp16", {}) for d in (one, other)}
    assert len(keys) == 2
    names = {timing_cache_name(v, sm) for v in ("10.16.0", "11.4.0") for sm in ("8.9", "9.0")}
    assert len(names) == 4 and all(n.endswith(".cache") for n in names)


def test_gpu_identity_asks_nvidia_smi_for_the_visible_device(monkeypatch):
    import subprocess

    calls = []

    def run(command, **kwargs):
        calls.append(command)
        return types.SimpleNamespace(stdout="NVIDIA H200, 9.0\n")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert gpu_identity() == ("NVIDIA H200", "9.0") and "--id=3" in calls[-1]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    gpu_identity()
    assert not any(arg.startswith("--id") for arg in calls[-1])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    with pytest.raises(DependencyError, match="hides every GPU"):
        gpu_identity()


def test_onnxruntime_falling_back_to_the_cpu_is_refused():
    from runtime.session import check_provider_used

    session = types.SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"])
    with pytest.raises(DependencyError,
                       match="did not start TensorrtExecutionProvider .it runs on CPUExecutionProvider"):
        check_provider_used(session, "TensorrtExecutionProvider")
    check_provider_used(types.SimpleNamespace(get_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]),
                        "CUDAExecutionProvider")


def test_cuda_provider_runs_fp32_without_tf32(tmp_path):
    from runtime.providers import provider_options

    for provider in ("cuda", "tensorrt"):
        options = dict(provider_options(provider, "fp32", tmp_path))
        assert options["CUDAExecutionProvider"]["use_tf32"] == "0"


def test_engine_cache_folders_differ_per_artifact(tmp_path):
    from runtime.manifest import Manifest
    from runtime.session import artifact_cache_id

    def manifest(weights_sha):
        return Manifest(tmp_path, {"variants": {"fp32": {"file": "m.onnx", "files": ["m.onnx", "m.onnx.data"]}},
                                   "files": {"m.onnx": {"sha256": "a" * 64}, "m.onnx.data": {"sha256": weights_sha}}})

    ids = {artifact_cache_id(manifest(sha), "fp32", "tensorrt", tmp_path / "m.onnx") for sha in ("b" * 64, "c" * 64)}
    assert len(ids) == 2 and all(i.startswith("fp32-") for i in ids)


# ---------------------------------------------------------------- the build, polygraphy faked
class Recorder:
    def __init__(self):
        self.calls = []

    def loader(self, name):
        def make(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return lambda: name
        return make


def fake_tensorrt(monkeypatch, strong: bool, flags: bool):
    creation = types.SimpleNamespace(**({"STRONGLY_TYPED": 5} if strong else {}))
    builder = types.SimpleNamespace(**({"FP16": 1, "INT8": 2, "TF32": 3} if flags else {"TF32": 3}))
    return fake_module(monkeypatch, "tensorrt", NetworkDefinitionCreationFlag=creation, BuilderFlag=builder,
                       __version__="11.4.0" if not flags else "10.16.0")


def fake_polygraphy(monkeypatch, recorder):
    fake_module(monkeypatch, "polygraphy")
    fake_module(monkeypatch, "polygraphy.backend")
    def add(self, name, **shapes):
        recorder.calls.append(("Profile.add", (name,), shapes))

    profile = type("Profile", (), {"add": add})
    fake_module(monkeypatch, "polygraphy.backend.trt", Profile=profile,
                **{n: recorder.loader(n) for n in ("CreateConfig", "EngineBytesFromNetwork", "NetworkFromOnnxPath",
                                                   "PostprocessNetwork")})

    def save_bytes(source, path):
        recorder.calls.append(("SaveBytes", (path,), {}))
        return lambda: Path(path).write_bytes(b"plan")
    fake_module(monkeypatch, "polygraphy.backend.common", SaveBytes=save_bytes)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_strongly_typed_build_on_tensorrt_11(monkeypatch, tmp_path, precision):
    from exporter.targets.tensorrt import _build

    recorder = Recorder()
    fake_tensorrt(monkeypatch, strong=True, flags=False)
    fake_polygraphy(monkeypatch, recorder)
    _build(tmp_path / "model.onnx", tmp_path / "model.plan", precision, ShapeProfile(), 160, tmp_path / "t.cache")
    calls = {name: kwargs for name, _, kwargs in recorder.calls}
    assert calls["NetworkFromOnnxPath"] == {"strongly_typed": True}
    assert "PostprocessNetwork" not in calls  # no layer precisions: TensorRT 11 has no ILayer.precision
    assert calls["CreateConfig"]["tf32"] is False
    assert not {"fp16", "int8", "precision_constraints"} & set(calls["CreateConfig"])
    assert "EngineBytesFromNetwork" in calls and (tmp_path / "model.plan").read_bytes() == b"plan"
    assert not (tmp_path / "model.partial").exists()


def test_weakly_typed_build_only_where_the_flags_exist(monkeypatch, tmp_path):
    from exporter.targets.tensorrt import _build, build_mode
    from runtime.errors import ExportError

    recorder = Recorder()
    fake_tensorrt(monkeypatch, strong=False, flags=True)
    fake_polygraphy(monkeypatch, recorder)
    _build(tmp_path / "model.onnx", tmp_path / "model.plan", "fp16", ShapeProfile(), 160, tmp_path / "t.cache")
    calls = {name: kwargs for name, _, kwargs in recorder.calls}
    assert calls["NetworkFromOnnxPath"] == {} and "PostprocessNetwork" in calls
    assert calls["CreateConfig"]["fp16"] is True and calls["CreateConfig"]["precision_constraints"] == "obey"
    trt = fake_module(monkeypatch, "tensorrt")
    with pytest.raises(ExportError, match="neither strongly typed networks nor the FP16 builder flag"):
        build_mode(trt)


def test_weak_typing_pins_floating_point_layers_only(monkeypatch):
    """The attention_mask sums are integer reductions: pinning them to fp32 would break the build."""
    from exporter.targets.tensorrt import _keep_norms_fp32

    kinds = types.SimpleNamespace(NORMALIZATION="norm", SOFTMAX="softmax", REDUCE="reduce", MATRIX_MULTIPLY="mm")
    fake_module(monkeypatch, "tensorrt", LayerType=kinds, float32="f32", float16="f16", int32="i32", int64="i64")

    class Layer:
        def __init__(self, kind, dtype):
            self.type, self.precision, self.outputs = kind, None, {}
            self.num_outputs, self._dtype = 1, dtype

        def get_output(self, k):
            return types.SimpleNamespace(dtype=self._dtype)

        def set_output_type(self, k, dtype):
            self.outputs[k] = dtype

    layers = [Layer("reduce", "i64"), Layer("reduce", "f16"), Layer("softmax", "f32"), Layer("norm", "f16"),
              Layer("mm", "f16"), Layer("reduce", "i32")]
    network = types.SimpleNamespace(num_layers=len(layers), get_layer=layers.__getitem__)
    _keep_norms_fp32(network)
    assert [layer.precision for layer in layers] == [None, "f32", "f32", "f32", None, None]
    assert [layer.outputs for layer in layers] == [{}, {0: "f32"}, {0: "f32"}, {0: "f32"}, {}, {}]


def test_engines_are_built_from_the_variant_the_gate_judged():
    from exporter.targets.tensorrt import engine_source

    assert {plan: engine_source(plan) for plan in ("fp32", "fp16", "int8")} == {"fp32": "fp32", "fp16": "fp16",
                                                                                "int8": "int8-qdq"}
    with pytest.raises(ExportError, match=r"^engine precision 'int4' is unknown; expected one of fp32, fp16, int8$"):
        engine_source("int4")


def test_gpu_check_says_in_one_line_what_is_missing_here():
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi: run benchmarks/gpu_check.py itself")
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], capture_output=True, text=True, cwd=root,
                          timeout=120)
    assert done.returncode == 1
    assert done.stdout.strip().splitlines() == ["gpu_check: cannot run here: no NVIDIA GPU (nvidia-smi is missing or "
                                                "lists none)"]


class OrtRunner:
    """A stand-in for TrtRunner that answers what the engine would: the artifact's fp32 graph in onnxruntime."""

    def __init__(self, engine):
        import onnxruntime as ort

        self.session = ort.InferenceSession(engine, providers=["CPUExecutionProvider"])
        self.active = False

    def activate(self):
        self.active = True

    def deactivate(self):
        self.active = False

    def infer(self, feeds, copy_outputs_to_host=True):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, feeds)))


@pytest.fixture
def engine_artifact(monkeypatch, tmp_path):
    """An artifact whose manifest lists an fp32 plan, with TensorRT faked: the plan's 'engine' is the fp32
    ONNX file, run by onnxruntime. What is tested is the Session around the plan, which needs no GPU."""
    import json
    import shutil

    from exporter.export import export
    from runtime.manifest import file_entry

    art = export("tiny", tmp_path / "art")
    fake_module(monkeypatch, "tensorrt")
    fake_module(monkeypatch, "polygraphy")
    fake_module(monkeypatch, "polygraphy.backend")
    fake_module(monkeypatch, "polygraphy.backend.trt", engine_from_bytes=lambda data: data, TrtRunner=OrtRunner)
    shutil.copy(art / "model.fp32.cpu.onnx", art / "model.fp32.plan")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["model.fp32.plan"] = file_entry(art / "model.fp32.plan")
    manifest["engines"] = {"fp32": {"file": "model.fp32.plan", "files": ["model.fp32.plan"],
                                    "profile": ShapeProfile(1, 2, 3, 8, 50, 120).to_dict()}}
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


def test_session_runs_a_plan_within_its_profile(engine_artifact):
    from runtime import Session
    from runtime.errors import InputError

    features = np.random.default_rng(0).standard_normal((2, 40, 160)).astype(np.float32)
    with Session(engine_artifact, provider="trt-engine") as session:
        assert session.engine_limits == (3, 120) and session.precision == "fp32"
        assert session.path.name == "model.fp32.plan" and session.input_names == ["input_features", "attention_mask"]
        assert session.output_names == ["last_hidden_state"] and session.head == "Model"
        got = session.run(features)["last_hidden_state"]
        np.testing.assert_allclose(got, Session(engine_artifact).run(features)["last_hidden_state"], atol=1e-5)
        with pytest.raises(InputError, match="frames"):
            session.run(np.zeros((1, 121, 160), np.float32))  # past the profile's 120 frames
        with pytest.raises(InputError, match="takes features"):
            session.run_frontend(np.zeros((1, 16000), np.float32))
    assert Session(engine_artifact).engine_limits is None  # onnxruntime runs any shape


def test_session_refuses_a_plan_it_cannot_trust(engine_artifact):
    from runtime import Session
    from runtime.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"has no 'fp16' TensorRT engine \(it has: fp32\); build one with"):
        Session(engine_artifact, precision="fp16", provider="trt-engine")
    with pytest.raises(ArtifactError, match="provider 'trt-engine' needs an artifact directory, got"):
        Session(engine_artifact / "model.fp32.plan", provider="trt-engine")
    plan = engine_artifact / "model.fp32.plan"
    plan.write_bytes(plan.read_bytes()[:-1] + b"x")  # one byte changed
    with pytest.raises(ArtifactError, match="model.fp32.plan does not match its sha256 in the manifest"):
        Session(engine_artifact, provider="trt-engine")
