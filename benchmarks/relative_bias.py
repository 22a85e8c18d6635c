"""relative_key's attention bias in onnxruntime: the form the export uses against the alternatives.

    python -m benchmarks.relative_bias [--frames 499] [--heads 16] [--left 64] [--right 8]
                                       [--threads 2] [--calls 40]

bias[h, i, j] = P[h, i, clamp(j - i, -left, right) + left] for P = Q·Eᵀ of shape (H, T, R). Each form
is a standalone graph over the same P, checked equal to numpy's take_along_axis, then timed (median
and best of `calls`, after 5 warm-up calls). The index inputs are the per-forward constants a form needs
(built once per forward and shared by every layer, so they are fed here, not timed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _graph(nodes, inputs: dict[str, np.ndarray]):
    from onnx import TensorProto, helper

    types = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
             np.dtype(np.int32): TensorProto.INT32}
    graph = helper.make_graph(nodes, "bias", [helper.make_tensor_value_info(k, types[v.dtype], None)
                                              for k, v in inputs.items()],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def forms(values: np.ndarray, rows: np.ndarray) -> dict[str, tuple]:
    """{name: (graph, feeds)} for values P (H, T, R) and rows[i*T + j] = i*R + clamped distance."""
    from onnx import helper

    h, t, r = values.shape
    shape = np.array([h, t, t])
    flat = values.reshape(h, t * r)
    spread = np.ascontiguousarray(np.broadcast_to(rows, (h, t * t)))
    node = helper.make_node
    exported = [node("Transpose", ["v"], ["tb"], perm=[1, 2, 0]), node("Reshape", ["tb", "s1"], ["table"]),
                node("Gather", ["table", "rows"], ["picked"], axis=0),
                node("Transpose", ["picked"], ["back"], perm=[1, 0]), node("Reshape", ["back", "s2"], ["out"])]
    elements = [node("GatherElements", ["v", "index"], ["picked"], axis=1), node("Reshape", ["picked", "s2"], ["out"])]
    axis1 = [node("Gather", ["v", "rows"], ["picked"], axis=1), node("Reshape", ["picked", "s2"], ["out"])]
    return {
        "Gather rows + Transpose (exported)": (exported, {"v": values, "rows": rows,
                                                          "s1": np.array([t * r, h]), "s2": shape}),
        "GatherElements, int64 index": (elements, {"v": flat, "index": spread, "s2": shape}),
        "GatherElements, int32 index": (elements, {"v": flat, "index": spread.astype(np.int32), "s2": shape}),
        "Gather on axis 1": (axis1, {"v": flat, "rows": rows, "s2": shape}),
    }


def measure(frames: int, heads: int, left: int, right: int, threads: int, calls: int) -> list[dict]:
    import torch

    from exporter.model.attention import relative_key_rows
    from runtime.ort_session import ort_session

    r = left + right + 1
    rows = relative_key_rows(torch.tensor(frames), left, right).numpy()
    values = np.random.default_rng(0).standard_normal((heads, frames, r)).astype(np.float32)
    expected = np.take_along_axis(values.reshape(heads, -1), np.broadcast_to(rows, (heads, rows.size)), 1)
    results = []
    for name, (nodes, feeds) in forms(values, rows).items():
        session = ort_session(_graph(nodes, feeds).SerializeToString(), threads=threads, spin=True)
        out = session.run(None, feeds)[0]
        if not np.array_equal(out.reshape(heads, -1), expected):
            raise AssertionError(f"{name} computes another bias")
        for _ in range(4):
            session.run(None, feeds)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - start)
        index_bytes = sum(v.nbytes for k, v in feeds.items() if k in ("rows", "index"))
        results.append({"form": name, "median_ms": 1e3 * float(np.median(times)), "best_ms": 1e3 * min(times),
                        "index_mb": index_bytes / 1e6})
    return results


def main() -> None:
    from exporter.machine import describe, machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=499)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--left", type=int, default=64)
    parser.add_argument("--right", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    print(f"{describe(machine())}; T={args.frames}, H={args.heads}, R={args.left + args.right + 1}, "
          f"{args.threads} threads, {args.calls} calls")
    print("| form | median ms | best ms | index MB |\n|---|---:|---:|---:|")
    for row in measure(args.frames, args.heads, args.left, args.right, args.threads, args.calls):
        print(f"| {row['form']} | {row['median_ms']:.2f} | {row['best_ms']:.2f} | {row['index_mb']:.1f} |")


if __name__ == "__main__":
    main()
