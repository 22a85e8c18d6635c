"""This machine's matrix-multiply peaks, measured as the engines reach them: the roof of the roofline.

One matmul of the model's own shape (10 s of audio through the 600M encoder's feed-forward
up-projection: 500 frames x 1024 -> 4096) with the weight a constant, as in the exported graphs: both
engines prepack constant weights into their kernels' layouts once, which a matmul of two inputs (what
this module measured before) cannot do; on AMX that understated the int8 roof 4x. Per engine and type:

* fp32: numpy (BLAS sgemm), onnxruntime MatMul, OpenVINO MatMul at an f32 hint;
* int8: onnxruntime MatMulInteger (uint8 x int8 weights, dynamic quantization's kernel), OpenVINO on a
  Q/DQ MatMul (its int8 kernels, as int8-qdq graphs run);
* bf16: OpenVINO MatMul at a bf16 hint, where the CPU has bf16 units.

Each roof is the best engine's: "fp32", "int8" (GOP/s) and, where measured, "bf16", in GFLOP/s,
best of a few runs; every engine's figure is kept under "detail".
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

SHAPE = (500, 1024, 4096)  # M x K -> N


def _best(fn, runs: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_graph(kind: str):
    """An ONNX model: input a [M, K] times a constant weight [K, N]. kind "fp32" (MatMul), "integer"
    (uint8 input, MatMulInteger with an int8 weight) or "qdq" (float input, Q/DQ on both, MatMul)."""
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = SHAPE
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    if kind == "integer":
        inits.append(numpy_helper.from_array(rng.integers(-63, 64, (k, n), dtype=np.int8), "w"))
        nodes.append(helper.make_node("MatMulInteger", ["a", "w"], ["c"]))
        a_type, c_type = TensorProto.UINT8, TensorProto.INT32
    else:
        a_type, c_type = TensorProto.FLOAT, TensorProto.FLOAT
        if kind == "fp32":
            inits.append(numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w"))
            nodes.append(helper.make_node("MatMul", ["a", "w"], ["c"]))
        elif kind == "qdq":
            inits += [numpy_helper.from_array(rng.integers(-63, 64, (k, n), dtype=np.int8), "wq"),
                      numpy_helper.from_array(np.full(n, 0.01, np.float32), "ws"),
                      numpy_helper.from_array(np.zeros(n, np.int8), "wz"),
                      numpy_helper.from_array(np.array(0.05, np.float32), "as"),
                      numpy_helper.from_array(np.array(0, np.int8), "az")]
            nodes += [helper.make_node("QuantizeLinear", ["a", "as", "az"], ["aq"]),
                      helper.make_node("DequantizeLinear", ["aq", "as", "az"], ["ad"]),
                      helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
                      helper.make_node("MatMul", ["ad", "wd"], ["c"])]
        else:
            raise ValueError(f"unknown matmul kind {kind!r}")
    graph = helper.make_graph(nodes, "peak", [helper.make_tensor_value_info("a", a_type, [m, k])],
                              [helper.make_tensor_value_info("c", c_type, [m, n])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _input(kind: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    m, k, _ = SHAPE
    if kind == "integer":
        return rng.integers(0, 255, (m, k), dtype=np.uint8)
    return rng.standard_normal((m, k)).astype(np.float32)


def _onnxruntime(kind: str, threads: int):
    from runtime.ort_session import ort_session

    session = ort_session(matmul_graph(kind).SerializeToString(), threads=threads, spin=True)
    a = _input(kind)
    return lambda: session.run(None, {"a": a})


def _openvino(kind: str, hint: str, threads: int):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(matmul_graph(kind).SerializeToString(), b"")
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads,
                                                 "PERFORMANCE_HINT": "LATENCY"})
    request, a = compiled.create_infer_request(), _input(kind)
    return lambda: request.infer({0: a})


def measure_peaks(threads: int) -> dict:
    m, k, n = SHAPE
    flops = 2.0 * m * k * n
    rate = lambda fn: flops / _best(fn) / 1e9  # noqa: E731
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
    a = _input("fp32")
    detail = {"numpy_sgemm_fp32": rate(lambda: a @ w),
              "onnxruntime_matmul_fp32": rate(_onnxruntime("fp32", threads)),
              "onnxruntime_matmulinteger_u8s8": rate(_onnxruntime("integer", threads))}
    if importlib.util.find_spec("openvino") is not None:
        from runtime.openvino_runner import has_bf16

        detail["openvino_matmul_f32"] = rate(_openvino("fp32", "f32", threads))
        detail["openvino_qdq_int8"] = rate(_openvino("qdq", "f32", threads))
        if has_bf16():
            detail["openvino_matmul_bf16"] = rate(_openvino("fp32", "bf16", threads))
    peaks = {"fp32": max(v for key, v in detail.items() if key.endswith("fp32") or key.endswith("f32")),
             "int8": max(detail["onnxruntime_matmulinteger_u8s8"], detail.get("openvino_qdq_int8", 0.0))}
    if "openvino_matmul_bf16" in detail:
        peaks["bf16"] = detail["openvino_matmul_bf16"]
    return {**peaks, "detail": {**detail, "shape": list(SHAPE), "threads": threads, "constant_weights": True}}
