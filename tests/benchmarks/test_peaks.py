"""The roof: matmuls of the model's shape with constant weights compute what they claim, per engine."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from onnx import numpy_helper

from benchmarks.peaks import SHAPE, _input, matmul_graph, measure_peaks
from runtime.ort_session import ort_session


def _weights(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("kind", ["fp32", "integer", "qdq"])
def test_each_graph_is_a_matmul_with_a_constant_weight(kind):
    model = matmul_graph(kind)
    assert [i.name for i in model.graph.input] == ["a"]  # the weight is an initializer: prepacked
    a, w = _input(kind), _weights(model)
    got = ort_session(model.SerializeToString()).run(None, {"a": a})[0]
    m, k, n = SHAPE
    assert got.shape == (m, n)
    if kind == "fp32":
        np.testing.assert_allclose(got, a @ w["w"], rtol=1e-4, atol=1e-3)
    elif kind == "integer":
        np.testing.assert_array_equal(got, a.astype(np.int64) @ w["w"].astype(np.int64))
    else:
        scale = float(w["as"])
        aq = np.clip(np.round(a / scale), -128, 127) * scale
        np.testing.assert_allclose(got, aq @ (w["wq"] * w["ws"]), rtol=1e-4, atol=1e-3)


def test_the_roofs_are_the_best_engine_per_type():
    peaks = measure_peaks(1)
    detail = peaks["detail"]
    assert detail["shape"] == list(SHAPE) and detail["constant_weights"] is True
    fp32 = [v for k, v in detail.items() if k.endswith(("_fp32", "_f32"))]
    assert peaks["fp32"] == max(fp32) and all(v > 0 for v in fp32)
    assert peaks["int8"] == max(detail["onnxruntime_matmulinteger_u8s8"], detail.get("openvino_qdq_int8", 0.0))
    if importlib.util.find_spec("openvino") is not None:
        from runtime.openvino_runner import has_bf16

        assert ("openvino_qdq_int8" in detail) and ("bf16" in peaks) is has_bf16()
