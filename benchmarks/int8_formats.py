"""Which int8 operand types run fastest on this CPU: U8S8 vs U8U8 (dynamic), S8S8 vs U8S8 (QDQ).

    python -m benchmarks.int8_formats ARTIFACT [--frames 500] [--threads 2] [--repeats 5]

ARTIFACT must hold an fp32 variant (e.g. `w2vbert export w2v-bert-2.0 -o ART`). Each format is
quantized from it into a temporary dir, then all are timed in this process, interleaved
(A B C D, B C D A, ...) on the same input. `exporter.quantize` uses the winners; the QDQ
variant must stay S8S8 whatever the CPU says, because TensorRT only takes symmetric int8.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def build(fp32: Path, folder: Path) -> dict[str, Path]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from exporter.calibration import calibration_feeds
    from exporter.quantize import _int8_qdq, weight_matmuls

    nodes = weight_matmuls(onnx.load(str(fp32), load_external_data=False))
    out = {}
    for label, weight in (("dynamic U8S8 (int8 weights)", QuantType.QInt8),
                          ("dynamic U8U8 (uint8 weights)", QuantType.QUInt8)):
        path = folder / f"{len(out)}.onnx"
        quantize_dynamic(str(fp32), str(path), weight_type=weight, per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_quantize=nodes, use_external_data_format=True,
                         extra_options={"MatMulConstBOnly": True})
        out[label] = path
        print("built", label, flush=True)
    feeds = calibration_feeds(None, {}, 160, 1)
    path = folder / "qdq-s8s8.onnx"
    _int8_qdq(fp32, path, (), feeds, "minmax")
    out["QDQ S8S8 (symmetric int8 activations)"] = path
    print("built QDQ S8S8", flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8-formats.md"))
    args = parser.parse_args(argv)
    import onnxruntime as ort

    from benchmarks.run import cpu_name
    from exporter.artifact import tool_versions

    folder = Path(tempfile.mkdtemp(prefix="w2vbert-int8-"))
    models = build(args.artifact / "model.fp32.onnx", folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for k, p in models.items()}
    rng = np.random.default_rng(0)
    feed = {"input_features": rng.standard_normal((1, args.frames, 160)).astype(np.float32),
            "attention_mask": np.ones((1, args.frames), np.int64)}
    names = list(sessions)
    for s in sessions.values():
        s.run(None, feed)  # warm-up
    times = {k: [] for k in names}
    for r in range(args.repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            sessions[k].run(None, feed)
            times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    best = min(med.values())
    lines = ["# int8 operand formats on this CPU", "",
             f"Command: `python -m benchmarks.int8_formats ARTIFACT --frames {args.frames} --threads {args.threads} "
             f"--repeats {args.repeats}` (ARTIFACT: `w2vbert export w2v-bert-2.0`), batch 1, interleaved runs.", "",
             "| format | median ms | min ms | vs fastest |", "|---|---:|---:|---:|"]
    for k in names:
        lines.append(f"| {k} | {med[k]:.0f} | {min(times[k]) * 1e3:.0f} | {med[k] / best:.2f}x |")
    lines += ["", f"Machine: {cpu_name()} ({os.cpu_count()} cores), Python "
              f"{platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in tool_versions().items()), ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
