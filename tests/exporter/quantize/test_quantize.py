"""Reduced precisions: what each conversion builds, the default gates on the bundled model, QDQ rules.

Variants that tests only inspect are built with permissive gates (conftest.PERMISSIVE_GATES),
so they exist on any CPU; the gate's verdicts are tested in test_gates.py.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from exporter.cli import main
from exporter.export import export
from exporter.parity.compare import compare, is_scaled, tolerance
from exporter.quantize import convert as quantize_module
from exporter.quantize.gates import parse_overrides, thresholds
from exporter.quantize.sensitivity import group_of, layer_groups
from exporter.steps.precisions import QuantOptions
from runtime import Session
from runtime.errors import ExportError, GateError, InputError, OptionError

from ...conftest import padded_batch, permissive_gate_args, permissive_quant

ALL = ("fp32", "fp16", "int8", "int8-qdq", "int4")


@pytest.fixture(scope="module")
def fixture_artifact(tmp_path_factory):
    """The trained fixture model (CTC, adapter, relative_key) in every precision."""
    return export(None, tmp_path_factory.mktemp("q") / "art", precisions=ALL, quant=permissive_quant())


@pytest.fixture(scope="module")
def trt_qdq(tmp_path_factory):
    return export(None, tmp_path_factory.mktemp("t") / "art", precisions=("fp32", "int8-qdq"), target="tensorrt",
                  quant=permissive_quant())


@pytest.mark.parametrize("precision", ALL[1:])
def test_every_precision_passes_the_default_gate(fixture_artifact, precision):
    """The README's export of every precision: the default thresholds hold with a wide margin
    (measured on AVX2 and on SSE4.2, whose exact int8 sums stand for VNNI: int8-formats.md)."""
    from exporter.parity.runners import ort_runner
    from exporter.quantize.calibration import held_out_batches
    from exporter.quantize.gates import evaluate

    manifest = json.loads((fixture_artifact / "manifest.json").read_text())
    variant = manifest["variants"][precision]
    assert variant["gate"]["passed"] and variant["precision"] == precision
    batches = held_out_batches(None, manifest["preprocessor"], 160, manifest["min_frames"])
    result = evaluate(precision, "CTC", manifest["config"], ort_runner(fixture_artifact / "model.fp32.onnx"),
                      ort_runner(fixture_artifact / variant["file"]), batches)
    assert result.passed, result.report()
    assert result.thresholds == thresholds(precision, "CTC")  # the defaults, not the fixture's
    features, mask = padded_batch(83, seed=5)
    reference = Session(fixture_artifact, "fp32").run(features, mask)
    got = Session(fixture_artifact, precision).run(features, mask)
    assert got["logits"].dtype == np.float32  # the interface stays fp32 in every precision
    rows = compare(reference, got, precision)
    assert is_scaled(precision) and np.isfinite(rows[0].max_abs)
    assert rows[0].max_abs > 0  # it really is a different (reduced) computation


def test_sizes_shrink(fixture_artifact):
    sizes = {p: sum(f.stat().st_size for f in fixture_artifact.glob(f"model.{p}.onnx*")) for p in ALL}
    assert sizes["int8"] < 0.5 * sizes["fp32"] and sizes["int4"] < sizes["int8"] < sizes["fp16"] < sizes["fp32"]


def test_fp16_keeps_norms_fp32_and_stays_finite_on_long_input(fixture_artifact):
    model = onnx.load(str(fixture_artifact / "model.fp16.onnx"))
    weights = {t.name: t for t in model.graph.initializer}
    norms = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "SkipLayerNormalization")]
    assert norms
    for node in norms:
        gamma = weights[node.input[2] if node.op_type == "SkipLayerNormalization" else node.input[1]]
        assert gamma.data_type == onnx.TensorProto.FLOAT, node.name
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    rng = np.random.default_rng(0)
    features = (rng.standard_normal((1, 3000, 160)) * 3).astype(np.float32)  # 60 s, loud
    out = Session(fixture_artifact, "fp16").run(features)["logits"]
    assert np.isfinite(out).all()


def test_cpu_and_tensorrt_variants_drop_skip_layernorm(fixture_artifact):
    # int8 / int4 run on ORT's CPU kernels only, int8-qdq on them or TensorRT: one graph, unfused.
    for precision in ("int8", "int4", "int8-qdq"):
        ops = {n.op_type for n in onnx.load(str(fixture_artifact / f"model.{precision}.onnx")).graph.node}
        assert "SkipLayerNormalization" not in ops and "MultiHeadAttention" in ops
    for name in ("model.fp32.onnx", "model.fp16.onnx"):  # what the CUDA provider loads keeps the fusion
        assert any(n.op_type == "SkipLayerNormalization" for n in onnx.load(str(fixture_artifact / name)).graph.node)


def test_int8_quantizes_only_weight_matmuls_per_channel(fixture_artifact):
    model = onnx.load(str(fixture_artifact / "model.int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    fp32 = onnx.load(str(fixture_artifact / "model.fp32.onnx"))
    assert ops.count("MatMulInteger") == len(quantize_module.weight_matmuls(fp32))
    scales = [t for t in model.graph.initializer if t.name.endswith("_scale")]
    assert scales and all(len(t.dims) == 1 and t.dims[0] > 1 for t in scales)  # per output channel


def test_qdq_follows_tensorrt_rules(trt_qdq):
    from exporter.passes.trt_lint import check

    path = trt_qdq / "model.int8-qdq.onnx"
    check(path)  # every node in TensorRT's parser list, QuantizeLinear / DequantizeLinear included
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    produced_by = {o: n for n in model.graph.node for o in n.output}
    weight_dq = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), f"{node.name}: zero point must be int8 0"
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:  # a weight
            weight_dq += 1
            axis = next(a.i for a in node.attribute if a.name == "axis")
            assert axis == 1 and inits[node.input[1]].shape == (inits[node.input[0]].shape[1],)
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    quantized = [n for n in matmuls if produced_by.get(n.input[1]) is not None
                 and produced_by[n.input[1]].op_type == "DequantizeLinear"]
    assert weight_dq == len(quantized) > 0
    for node in quantized:  # activation side quantized too (explicit int8 GEMM for TensorRT)
        assert produced_by[node.input[0]].op_type == "DequantizeLinear"
    # attention score products (activation x activation) stay in float
    assert any(n not in quantized for n in matmuls)
    manifest = json.loads((trt_qdq / "manifest.json").read_text())
    assert manifest["variants"]["int8-qdq"]["calibration"]["calibrator"] == "percentile"


def test_precision_target_combinations_refused(tmp_path):
    for precision in ("int8", "int4"):
        with pytest.raises(ExportError, match=f"precision {precision} cannot target tensorrt"):
            export(None, tmp_path / precision, precisions=("fp32", precision), target="tensorrt")
    assert not list(tmp_path.iterdir())


def _damage(original, group):
    """Wrap int8_dynamic: after quantizing, zero the int8 weights of MatMuls in `group`."""
    def damaged(src, dst, exclude, *rest):
        original(src, dst, exclude, *rest)
        model = onnx.load(str(dst))
        fp32 = onnx.load(str(src), load_external_data=False)
        targets = {n.input[1] + "_quantized" for n in fp32.graph.node
                   if n.op_type == "MatMul" and group in n.name and n.name not in set(exclude)}
        for tensor in model.graph.initializer:
            if tensor.name in targets:
                tensor.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(tensor)), tensor.name))
        onnx.save_model(model, str(dst), save_as_external_data=True, location=dst.name + ".data")
    return damaged


def test_gate_fails_on_damaged_model_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(quantize_module, "int8_dynamic", _damage(quantize_module.int8_dynamic, "layers.1/"))
    previous = export(None, tmp_path / "art")  # an earlier good artifact at OUT
    before = sorted(p.name for p in previous.iterdir())
    result = CliRunner().invoke(main, ["export", "-o", str(tmp_path / "art"), "--force", "--precision", "fp32,int8"])
    assert result.exit_code == GateError.exit_code, result.output
    assert "int8 accuracy gate FAILED" in result.output and "agreement" in result.output
    assert result.output.count("int8 accuracy gate FAILED") == 1  # the report is printed once
    assert "Traceback" not in result.output
    assert sorted(p.name for p in previous.iterdir()) == before  # the old artifact is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no staging left behind


def test_keep_fp32_auto_keeps_the_damaged_layer(tmp_path, monkeypatch):
    monkeypatch.setattr(quantize_module, "int8_dynamic", _damage(quantize_module.int8_dynamic, "layers.1/"))
    out = export(None, tmp_path / "art", precisions=("fp32", "int8"), quant=QuantOptions(keep_fp32="auto"))
    variant = json.loads((out / "manifest.json").read_text())["variants"]["int8"]
    assert variant["gate"]["passed"]
    assert variant["sensitivity"][0]["group"] == "encoder/layers.1"  # ranked most damaging
    assert variant["kept_fp32"] and all("layers.1/" in n for n in variant["kept_fp32"])


def test_gate_overrides_and_thresholds():
    overrides = parse_overrides(["int8.max_cer=2", "min_cosine=0.5"])
    table = thresholds("int8", "CTC", overrides)
    assert table["max_cer"] == 2 and table["min_cosine"] == 0.5
    assert table["max_scaled_error"] == tolerance("int8", "logits")
    assert "max_cer" not in thresholds("fp16", "SequenceClassification")
    for bad in ("int8.max_cer", "int9.max_cer=1", "int8.speed=1", "max_cer=abc"):
        with pytest.raises(ExportError, match="gate override"):
            parse_overrides([bad])


def test_layer_groups():
    names = ["/wav2vec2_bert/encoder/layers.0/ffn1/intermediate_dense/MatMul",
             "/wav2vec2_bert/encoder/layers.0/self_attn/linear_q/MatMul",
             "/wav2vec2_bert/encoder/layers.11/self_attn/linear_q/MatMul",
             "/wav2vec2_bert/adapter/layers.0/self_attn/linear_q/MatMul",
             "/wav2vec2_bert/feature_projection/projection/MatMul", "/lm_head/MatMul"]
    assert [group_of(n) for n in names] == ["encoder/layers.0", "encoder/layers.0", "encoder/layers.11",
                                            "adapter/layers.0", "feature_projection/projection", "lm_head"]
    assert list(layer_groups(names)) == ["encoder/layers.0", "encoder/layers.11", "adapter/layers.0",
                                         "feature_projection/projection", "lm_head"]


def test_calibration_from_features_and_bad_files(tmp_path):
    from exporter.quantize.calibration import calibration_feeds, held_out_batches

    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.standard_normal((250, 160)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal((2, 120, 160)).astype(np.float32))
    feeds = calibration_feeds(tmp_path, {}, 160, 1)
    assert len(feeds) == 4 and all(f["input_features"].shape == (1, 100, 160) for f in feeds)
    batches = held_out_batches(tmp_path, {}, 160, 1)
    assert batches[0][0].shape == (3, 250, 160) and batches[0][1].sum(axis=1).tolist() == [250, 120, 120]
    np.save(tmp_path / "c.npy", np.full((10, 80), np.nan, np.float32))
    with pytest.raises(InputError, match=r"c.npy: features of shape \(10, 80\)"):
        calibration_feeds(tmp_path, {}, 160, 1)
    with pytest.raises(InputError, match="does not exist"):
        calibration_feeds(tmp_path / "nowhere", {}, 160, 1)


def test_calibrators_give_different_ranges(fixture_artifact, tmp_path):
    from exporter.quantize.calibration import calibration_feeds

    feeds = calibration_feeds(None, {}, 160, 1)
    scales = {}
    for calibrator in ("percentile", "entropy", "minmax"):
        path = tmp_path / f"{calibrator}.onnx"
        quantize_module.quantize(fixture_artifact / "model.fp32.onnx", path, "int8-qdq", calibration=feeds,
                                 calibrator=calibrator)
        model = onnx.load(str(path))
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        scales[calibrator] = np.array([float(inits[n.input[1]]) for n in model.graph.node  # activation ranges
                                       if n.op_type == "QuantizeLinear" and n.input[0] not in inits])
        features, mask = padded_batch(40)
        import onnxruntime as ort

        out = ort.InferenceSession(str(path)).run(None, {"input_features": features, "attention_mask": mask})[0]
        assert np.isfinite(out).all()
    assert len(scales["minmax"]) > 0 and (scales["percentile"] <= scales["minmax"] * (1 + 1e-6)).all()
    assert not np.array_equal(scales["percentile"], scales["minmax"])  # the percentile clips outliers
    # entropy (KL) thresholds may equal the full range on such short calibration sets: built and run only.
    with pytest.raises(ExportError, match="calibrator 'kl' is unknown"):
        quantize_module.quantize(fixture_artifact / "model.fp32.onnx", tmp_path / "x.onnx", "int8-qdq",
                                 calibration=feeds, calibrator="kl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entropy.onnx", "minmax.onnx", "percentile.onnx"]


def test_cli_calibration_gate_data_and_explicit_keep(tmp_path):
    from exporter.quantize.calibration import bundled_samples

    rng = np.random.default_rng(1)
    (tmp_path / "calib").mkdir()
    np.save(tmp_path / "calib" / "x.npy", rng.standard_normal((300, 160)).astype(np.float32))
    (tmp_path / "gate").mkdir()
    for path in bundled_samples()[:2]:
        (tmp_path / "gate" / path.name).write_bytes(path.read_bytes())
    args = ["export", "-o", str(tmp_path / "art"), "--precision", "fp32,int8-qdq", "--calibration",
            str(tmp_path / "calib"), "--calibrator", "minmax", "--gate-data", str(tmp_path / "gate"),
            "--keep-fp32", "linear_q,lm_head", *permissive_gate_args(), "--gate", "int8-qdq.min_cosine=0.9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    variant = json.loads((tmp_path / "art" / "manifest.json").read_text())["variants"]["int8-qdq"]
    assert variant["calibration"] == {"calibrator": "minmax", "windows": 3, "data": str(tmp_path / "calib")}
    assert variant["gate_data"]["path"] == str((tmp_path / "gate").resolve()) and variant["gate_data"]["files"] == 2
    assert variant["gate"]["thresholds"]["min_cosine"] == 0.9
    assert variant["kept_fp32"] and all("linear_q" in n or "lm_head" in n for n in variant["kept_fp32"])
    kept_inputs = {n.input[1] for n in onnx.load(str(tmp_path / "art" / "model.fp32.onnx")).graph.node
                   if n.name in set(variant["kept_fp32"])}
    dequantized = {n.output[0] for n in onnx.load(str(tmp_path / "art" / "model.int8-qdq.onnx")).graph.node
                   if n.op_type == "DequantizeLinear"}
    assert not kept_inputs & dequantized  # the kept MatMuls read their fp32 weights directly
    result = CliRunner().invoke(main, ["export", "-o", str(tmp_path / "b"), "--precision", "fp32,int8",
                                       "--keep-fp32", "no_such_layer"])
    assert result.exit_code == OptionError.exit_code and "match no weight MatMul" in result.output
    assert not (tmp_path / "b").exists()
