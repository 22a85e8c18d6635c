"""Triton model repository: every config.pbtxt parses with Triton's own ModelConfig schema,
agrees with the ONNX graph, and the ONNX runs in onnxruntime with the declared shapes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from google.protobuf import text_format

from exporter.cli import main
from exporter.targets.triton import accelerator_profile, model_config, write_repository
from runtime import Session
from runtime.errors import ExportError
from runtime.manifest import file_entry
from runtime.trt_profile import ShapeProfile

from ...conftest import permissive_gate_args

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="needs tritonclient[grpc] (the test extra)")
ONNX_TYPES = {onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32, onnx.TensorProto.INT64: model_config_pb2.TYPE_INT64}


def parse(folder):
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def graph_dims(value_info) -> list[int]:
    return [-1 if d.dim_param or not d.dim_value else d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    result = CliRunner().invoke(main, ["export", "-o", str(root / "art"), "--precision", "fp32,int8",
                                       *permissive_gate_args(), "--triton-repo", str(root / "repo")])
    assert result.exit_code == 0, result.output
    return root


def test_onnx_models_match_their_configs_and_run(repo):
    folders = sorted((repo / "repo").iterdir())
    assert [f.name for f in folders] == ["w2vbert_ctc_audio", "w2vbert_ctc_fp32", "w2vbert_ctc_int8"]
    for folder in folders[1:]:  # the onnxruntime-backend models (the audio model: next test)
        config = parse(folder)
        assert config.name == folder.name and config.backend == "onnxruntime" and config.max_batch_size == 8
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
        assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
        graph = onnx.load(str(folder / "1" / "model.onnx")).graph
        # CPU instances serve the CPU form: no SkipLayerNormalization (slower on ORT's CPU provider)
        assert "SkipLayerNormalization" not in {n.op_type for n in graph.node}
        declared = {t.name: t for t in list(config.input) + list(config.output)}
        for value in list(graph.input) + list(graph.output):
            tensor = declared.pop(value.name)
            assert tensor.data_type == ONNX_TYPES[value.type.tensor_type.elem_type], value.name
            assert list(tensor.dims) == graph_dims(value)[1:], value.name  # batch axis implied
        assert not declared
        # Run with the declared shapes: batch 2, every -1 as 60 frames.
        session = ort.InferenceSession(str(folder / "1" / "model.onnx"))
        feeds = {}
        for tensor in config.input:
            shape = [2] + [60 if d == -1 else d for d in tensor.dims]
            dtype = np.float32 if tensor.data_type == model_config_pb2.TYPE_FP32 else np.int64
            feeds[tensor.name] = np.ones(shape, dtype)
        outputs = session.run(None, feeds)
        for tensor, value in zip(config.output, outputs):
            assert value.shape[0] == 2 and all(d == -1 or d == v for d, v in zip(tensor.dims, value.shape[1:]))


def test_audio_model_is_a_python_backend_model_with_its_files(repo):
    folder = repo / "repo" / "w2vbert_ctc_audio"
    config = parse(folder)
    assert config.backend == "python" and config.max_batch_size == 8
    audio, rate = config.input
    assert (audio.name, audio.data_type, list(audio.dims), audio.allow_ragged_batch) == \
        ("audio", model_config_pb2.TYPE_FP32, [-1], True)
    assert (rate.name, rate.data_type, list(rate.dims), rate.optional) == \
        ("sampling_rate", model_config_pb2.TYPE_INT32, [1], True)
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [("text", model_config_pb2.TYPE_STRING, [1])]
    assert config.parameters["kind"].string_value == "audio"
    assert config.parameters["artifact"].string_value == "artifact"
    assert "from runtime.triton_model import TritonPythonModel" in (folder / "1" / "model.py").read_text()
    inside = sorted(p.name for p in (folder / "1" / "artifact").iterdir())
    assert inside == ["manifest.json", "model.fp32.cpu.onnx", "preprocessor_config.json", "special_tokens_map.json",
                      "tokenizer_config.json", "vocab.json"]
    Session(folder / "1" / "artifact")  # loads: the manifest and the files it reads are there


def test_gpu_instances_get_the_tensorrt_accelerator(repo, tmp_path):
    write_repository(repo / "art", tmp_path / "gpu", gpu=True, max_batch=4, threads=2)
    config = parse(tmp_path / "gpu" / "w2vbert_ctc_fp32")
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"
    # an engine cache, so instance loads after the first do not rebuild the engines
    assert accelerator.parameters["trt_engine_cache_enable"] == "1"
    assert accelerator.parameters["trt_engine_cache_path"].endswith("/w2vbert_ctc_fp32")
    assert accelerator.parameters["trt_timing_cache_enable"] == "1"
    # one profile for every batch the scheduler forms and the export's default lengths (1 s to 30 s)
    assert accelerator.parameters["trt_profile_min_shapes"] == "input_features:1x50x160,attention_mask:1x50"
    assert accelerator.parameters["trt_profile_opt_shapes"] == "input_features:4x500x160,attention_mask:4x500"
    assert accelerator.parameters["trt_profile_max_shapes"] == "input_features:4x1500x160,attention_mask:4x1500"
    assert config.parameters["intra_op_thread_count"].string_value == "2"
    assert config.max_batch_size == 4 and list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    graph = onnx.load(str(tmp_path / "gpu" / "w2vbert_ctc_fp32" / "1" / "model.onnx")).graph
    assert "SkipLayerNormalization" in {n.op_type for n in graph.node}  # GPU instances: the fused graph
    int8 = parse(tmp_path / "gpu" / "w2vbert_ctc_int8")  # dynamic int8 is CPU-only: no TensorRT accelerator
    assert not int8.optimization.execution_accelerators.gpu_execution_accelerator


def test_accelerator_profile_follows_the_artifacts_plan(repo, tmp_path):
    """A plan built with --min/--max-seconds sets the frames of the accelerator's profile too."""
    art = tmp_path / "art"
    shutil.copytree(repo / "art", art)
    manifest = json.loads((art / "manifest.json").read_text())
    built = ShapeProfile.from_seconds(min_seconds=2, opt_seconds=5, max_seconds=20, max_batch=2).to_dict()
    manifest["engines"] = {"fp32": {"file": "model.fp32.plan", "files": [], "profile": built}}
    assert accelerator_profile(manifest, "fp32", 8) == {"min_batch": 1, "opt_batch": 8, "max_batch": 8,
                                                        "min_frames": 100, "opt_frames": 250, "max_frames": 1000}
    text = model_config("m", manifest, "onnxruntime", 8, "KIND_GPU", precision="fp32",
                        trt_profile=accelerator_profile(manifest, "fp32", 8))
    assert "batch <= 8, 100...1000 frames (2-20 s)" in text.splitlines()[text.splitlines().index("optimization {") - 1]
    params = text_format.Parse(text, model_config_pb2.ModelConfig()).optimization.execution_accelerators \
        .gpu_execution_accelerator[0].parameters
    assert params["trt_profile_max_shapes"] == "input_features:8x1000x160,attention_mask:8x1000"


def test_tensorrt_plan_model(repo, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(repo / "art", art)
    (art / "model.fp16.plan").write_bytes(b"plan bytes (built on a GPU machine)")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["model.fp16.plan"] = file_entry(art / "model.fp16.plan")
    manifest["engines"] = {"fp16": {"file": "model.fp16.plan", "files": ["model.fp16.plan"],
                                    "profile": ShapeProfile(max_batch=4).to_dict(), "tensorrt": "10.16.0",
                                    "gpu": "NVIDIA H200", "compute_capability": "9.0"}}
    (art / "manifest.json").write_text(json.dumps(manifest))
    write_repository(art, tmp_path / "repo")
    config = parse(tmp_path / "repo" / "w2vbert_ctc_fp16_trt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 4
    assert [t.name for t in config.input] == ["input_features", "attention_mask"]
    assert list(config.input[0].dims) == [-1, 160] and list(config.input[1].dims) == [-1]
    assert (tmp_path / "repo" / "w2vbert_ctc_fp16_trt" / "1" / "model.plan").read_bytes().startswith(b"plan")
    text = (tmp_path / "repo" / "w2vbert_ctc_fp16_trt" / "config.pbtxt").read_text()
    assert "TensorRT 10.16.0" in text and "sm 9.0" in text  # the version the plan needs, for whoever deploys it


def test_refuses_to_replace_foreign_directories(repo, tmp_path):
    (tmp_path / "repo" / "w2vbert_ctc_fp32").mkdir(parents=True)
    (tmp_path / "repo" / "w2vbert_ctc_fp32" / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="not a Triton model written by w2vbert"):
        write_repository(repo / "art", tmp_path / "repo")
    assert (tmp_path / "repo" / "w2vbert_ctc_fp32" / "mine.txt").exists()
