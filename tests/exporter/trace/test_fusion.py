"""Per-target graphs: fused attention for onnxruntime, standard ops for TensorRT."""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch

from exporter.export import export
from exporter.parity.compare import assert_close
from tests.conftest import POSITION_TYPES, padded_batch


@pytest.mark.parametrize("position", POSITION_TYPES, ids=str)
@pytest.mark.parametrize("target", ["ort", "tensorrt"])
def test_targets_fuse_and_match_transformers(hf_checkpoint, tmp_path, position, target):
    path, hf_model = hf_checkpoint("CTC", position, "wider")
    out = export(path, tmp_path / "a", target=target)
    model = onnx.load(str(out / "model.fp32.onnx"))
    ops = [n.op_type for n in model.graph.node]
    attentions = hf_model.config.num_hidden_layers + hf_model.config.num_adapter_layers
    if target == "ort":
        assert ops.count("MultiHeadAttention") == attentions
        assert ops.count("Softmax") == 0
        # q, k and v arrive biased: the projection bias input stays empty (a zero one costs an add pass)
        assert all(n.input[3] == "" for n in model.graph.node if n.op_type == "MultiHeadAttention")
        # 4 residual sums per Conformer layer and 1 per adapter layer feed a LayerNorm
        layers = hf_model.config.num_hidden_layers
        assert ops.count("SkipLayerNormalization") == 4 * layers + hf_model.config.num_adapter_layers
    else:
        assert ops.count("MultiHeadAttention") == 0 and ops.count("Softmax") == attentions
        assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert ops.count("LayerNormalization") > 0 and "ReduceMean" not in ops
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variants"]["fp32"]["target"] == target
    assert manifest["variants"]["fp32"]["fused_ops"]["graph"].get("MultiHeadAttention", 0) == (
        attentions if target == "ort" else 0)
    files = ["model.fp32.onnx"]
    if target == "ort":
        # The CPU form: the same graph with every SkipLayerNormalization as Add + LayerNormalization.
        form = manifest["variants"]["fp32"]["cpu_form"]
        assert form["file"] == "model.fp32.cpu.onnx" and form["files"] == ["model.fp32.cpu.onnx"]
        cpu_ops = [n.op_type for n in onnx.load(str(out / form["file"])).graph.node]
        assert "SkipLayerNormalization" not in cpu_ops
        assert cpu_ops.count("LayerNormalization") == ops.count("LayerNormalization") + ops.count(
            "SkipLayerNormalization")
        assert cpu_ops.count("MultiHeadAttention") == attentions
        assert form["fused_ops"]["graph"]["MultiHeadAttention"] == attentions
        files.append(form["file"])
    else:
        assert "cpu_form" not in manifest["variants"]["fp32"]
    for file in files:
        session = ort.InferenceSession(str(out / file), providers=["CPUExecutionProvider"])
        for frames in (23, 88):
            features, mask = padded_batch(frames, seed=frames)
            got = dict(zip(["logits"], session.run(None, {"input_features": features, "attention_mask": mask})))
            with torch.no_grad():
                expected = hf_model(torch.from_numpy(features), attention_mask=torch.from_numpy(mask)).logits
            assert_close({"logits": expected}, got, "fp32", label=f"{target} {file}, {frames} frames")


def test_pointwise_convolutions_are_matmuls(tmp_path):
    out = export("tiny", tmp_path / "a")
    convs = [n for n in onnx.load(str(out / "model.fp32.onnx")).graph.node if n.op_type == "Conv"]
    # Only the depthwise convolutions (one per layer) stay convolutions.
    assert len(convs) == 2
    assert all(a.i == 64 for n in convs for a in n.attribute if a.name == "group")


@pytest.mark.parametrize("target", ["ort", "tensorrt"])
def test_depthwise_convolution_layout_per_target(tmp_path, target):
    out = export("tiny", tmp_path / "a", target=target)
    graph = onnx.load(str(out / "model.fp32.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    kernels = {tuple(a.ints) for n in convs for a in n.attribute if a.name == "kernel_shape"}
    if target == "tensorrt":
        assert kernels == {(31,)}
        return
    # ort: a (1, K) 2-D conv fed by a channels-last transpose, which onnxruntime's CPU provider
    # turns into its blocked NCHWc kernels (ReorderInput absorbs the transpose).
    assert kernels == {(1, 31)}
    assert all(producers[n.input[0]].op_type == "Transpose" for n in convs)
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    if " avx2" in flags or " avx512f" in flags:  # MLAS has NCHWc kernels on AVX2 / AVX-512 only
        options = ort.SessionOptions()  # default level: ORT_ENABLE_ALL, which holds the NCHWc layout pass
        options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
        ort.InferenceSession(str(out / "model.fp32.onnx"), options, providers=["CPUExecutionProvider"])
        loaded = [n.op_type for n in onnx.load(str(tmp_path / "loaded.onnx")).graph.node]
        assert loaded.count("ReorderInput") == loaded.count("ReorderOutput") == len(convs)
        assert loaded.count("Transpose") == sum(n.op_type == "Transpose" for n in graph.node) - 2 * len(convs)


def test_relative_key_graph_never_holds_a_t_t_headdim_tensor(tmp_path):
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    out = export("tiny", tmp_path / "a", target="tensorrt")
    inferred = SymbolicShapeInference.infer_shapes(onnx.load(str(out / "model.fp32.onnx")), auto_merge=True)
    head_dim = 64 // 4
    shapes = []
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        shapes.append(dims)
        if len(dims) >= 3 and dims[-1] == head_dim:
            assert not (dims[-3] == dims[-2] and isinstance(dims[-2], str)), f"{value.name} has shape {dims}"
    assert any(len(d) == 4 and d[-1] == 73 for d in shapes)  # the (B, H, T, 73) Q·Eᵀ product exists


def test_unknown_target_is_refused(tmp_path):
    from runtime.errors import ExportError

    with pytest.raises(ExportError, match="target 'cuda' is unknown"):
        export("tiny", tmp_path / "a", target="cuda")


def test_tensorrt_lint_accepts_our_graph_and_names_bad_nodes(tmp_path):
    from exporter.passes.trt_lint import lint

    trt = export("tiny", tmp_path / "trt", target="tensorrt")
    assert lint(trt / "model.fp32.onnx") == []
    ort_graph = export("tiny", tmp_path / "ort", target="ort")
    problems = lint(ort_graph / "model.fp32.onnx")
    assert sum("com.microsoft::MultiHeadAttention" in p for p in problems) == 2
    assert sum("com.microsoft::SkipLayerNormalization" in p for p in problems) == 8  # 4 per layer
    assert len(problems) == 10
    model = onnx.load(str(trt / "model.fp32.onnx"))
    model.graph.node[0].op_type = "MatMulInteger"
    onnx.save(model, str(tmp_path / "bad.onnx"))
    assert any("MatMulInteger is not supported by TensorRT 10.15" in p for p in lint(tmp_path / "bad.onnx"))


def test_missing_fusion_is_an_error_not_a_silent_fallback():
    from exporter.model.heads import build_model
    from exporter.model.presets import preset_config
    from exporter.trace.prepare import check_fused
    from runtime.errors import ExportError

    model = build_model(preset_config("tiny"))
    check_fused(model, {"MultiHeadAttention": 2}, "ort")
    with pytest.raises(ExportError, match="expected 2 MultiHeadAttention nodes .* has 0"):
        check_fused(model, {"Softmax": 2}, "ort")
    with pytest.raises(ExportError, match="should hold 2 Softmax-based attentions"):
        check_fused(model, {"MultiHeadAttention": 2}, "tensorrt")
