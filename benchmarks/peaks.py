"""This machine's matrix-multiply peaks, measured: the roof of the roofline.

fp32: the best of numpy (BLAS sgemm) and onnxruntime MatMul on 2048^3.
int8: onnxruntime MatMulInteger (uint8 x int8, the kernel dynamic quantization
uses) on 2048^3. Reported in GFLOP/s (int8: GOP/s), best of a few runs.
"""

from __future__ import annotations

import time

import numpy as np

SIZE = 2048


def _best(fn, runs: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _ort_matmul(dtype_a, dtype_b, op: str, threads: int):
    from onnx import TensorProto, helper

    from runtime.ort_session import ort_session

    types = {np.float32: TensorProto.FLOAT, np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}
    out_type = TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])], "peak",
        [helper.make_tensor_value_info("a", types[dtype_a], [SIZE, SIZE]),
         helper.make_tensor_value_info("b", types[dtype_b], [SIZE, SIZE])],
        [helper.make_tensor_value_info("c", out_type, [SIZE, SIZE])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort_session(model.SerializeToString(), threads=threads, spin=True)
    rng = np.random.default_rng(0)
    if dtype_a is np.float32:
        a = rng.standard_normal((SIZE, SIZE)).astype(np.float32)
        b = rng.standard_normal((SIZE, SIZE)).astype(np.float32)
    else:
        a = rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8)
        b = rng.integers(-127, 127, (SIZE, SIZE), dtype=np.int8)
    return lambda: session.run(None, {"a": a, "b": b})


def measure_peaks(threads: int) -> dict:
    flops = 2.0 * SIZE ** 3
    a = np.random.default_rng(0).standard_normal((SIZE, SIZE)).astype(np.float32)
    numpy_fp32 = flops / _best(lambda: a @ a) / 1e9
    ort_fp32 = flops / _best(_ort_matmul(np.float32, np.float32, "MatMul", threads)) / 1e9
    int8 = flops / _best(_ort_matmul(np.uint8, np.int8, "MatMulInteger", threads)) / 1e9
    return {"fp32": max(numpy_fp32, ort_fp32), "int8": int8,
            "detail": {"numpy_sgemm_fp32": numpy_fp32, "onnxruntime_matmul_fp32": ort_fp32,
                       "onnxruntime_matmulinteger_u8s8": int8, "size": SIZE, "threads": threads}}
