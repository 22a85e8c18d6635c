"""Where the time goes inside one variant: onnxruntime's profiler, summed per operator type.

    python -m benchmarks.op_profile ARTIFACT [--precision fp32] [--seconds 10] [--threads 2]
                                   [--runs 3] [-o benchmarks/results/op-profile.md]

Runs the variant `runs` times on random features of `seconds` of audio (batch 1) after one
untimed run, with onnxruntime's profiling on, and reports per op type: kernel milliseconds
per call, share of the kernel total, node count, and the share that is matrix multiply
(MatMul, Gemm, MatMulInteger, fused/quantized matmuls, convolutions as matmuls). The
remainder (elementwise chains, normalisations, layout changes, softmax) is the distance to
the matmul roofline that graph changes can remove.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

MATMUL_OPS = frozenset({"MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                        "QLinearMatMul", "FusedMatMul", "FusedGemm", "MatMulNBits", "QGemm", "Conv", "FusedConv",
                        "ConvInteger", "QLinearConv", "NchwcConv"})


def profile(artifact: Path, precision: str, seconds: float, threads: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="w2vbert-profile-") as work:
        session, feeds, facts = profiled_session(artifact, precision, seconds, threads, Path(work))
        session.run(None, feeds)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    return summarize(events, runs + 1, {**facts, "runs": runs})


def profiled_session(artifact: Path, precision: str, seconds: float, threads: int, work: Path):
    """(session with onnxruntime's profiler on, batch-1 feeds of `seconds`, facts); its first call is
    the caller's to make and drop, first-call allocations having been taken by an unprofiled session."""
    from benchmarks.flops import frames_for_seconds
    from runtime.manifest import load_manifest
    from runtime.ort_session import ort_session

    manifest = load_manifest(artifact)
    form = manifest.form(precision, "cpu")
    frames = frames_for_seconds(seconds)
    dim = int(manifest.config["feature_projection_input_dim"])
    rng = np.random.default_rng(0)
    feeds = {"input_features": rng.standard_normal((1, frames, dim)).astype(np.float32),
             "attention_mask": np.ones((1, frames), np.int64)}
    path = manifest.safe_path(form["file"])
    ort_session(path, threads=threads).run(None, feeds)  # a first load warms the file cache and the allocator
    session = ort_session(path, threads=threads, profile_prefix=os.path.join(work, "profile"))
    facts = {"artifact": str(artifact), "precision": precision, "file": form["file"], "seconds": seconds,
             "frames": frames, "threads": threads, "config": manifest.config, "head": manifest.head}
    return session, feeds, facts


KERNEL_SUFFIX = "_kernel_time"  # onnxruntime names a node's kernel event "<node>_kernel_time"


def model_runs(events: list[dict]) -> list[dict]:
    """The profile's Session.run events, in time order."""
    return sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])


def kernel_events(events: list[dict]):
    """(op type, node name, start us, duration us) of every node kernel in an onnxruntime profile."""
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith(KERNEL_SUFFIX):
            yield e.get("args", {}).get("op_name", "?"), e["name"][:-len(KERNEL_SUFFIX)], e["ts"], e["dur"]


def summarize(events: list[dict], calls: int, facts: dict) -> dict:
    """Kernel time per op type, per call, from onnxruntime profile events (the first call dropped)."""
    runs = model_runs(events)
    first_end = runs[0]["ts"] + runs[0]["dur"] if runs else 0
    per_op = defaultdict(lambda: {"us": 0.0, "nodes": set()})
    per_role = defaultdict(lambda: {"us": 0.0, "nodes": set()})
    for op, node, start, duration in kernel_events(events):
        if start < first_end:
            continue
        per_op[op]["us"] += duration
        per_op[op]["nodes"].add(node)
        if op not in MATMUL_OPS:  # what graph changes could remove, located
            role = per_role[(op, role_of(node))]
            role["us"] += duration
            role["nodes"].add(node)
    timed = max(calls - 1, 1)
    total = sum(v["us"] for v in per_op.values())
    wall = sum(r["dur"] for r in runs[1:]) / timed if len(runs) > 1 else 0.0
    rows = sorted(({"op": op, "ms": v["us"] / timed / 1e3, "share": v["us"] / total if total else 0.0,
                    "nodes": len(v["nodes"]), "matmul": op in MATMUL_OPS} for op, v in per_op.items()),
                  key=lambda r: -r["ms"])
    matmul = sum(r["ms"] for r in rows if r["matmul"])
    roles = sorted(({"op": op, "role": role, "ms": v["us"] / timed / 1e3, "nodes": len(v["nodes"])}
                    for (op, role), v in per_role.items()), key=lambda r: -r["ms"])
    return {**facts, "rows": rows, "roles": roles[:TOP_ROLES], "kernel_ms": total / timed / 1e3,
            "run_ms": wall / 1e3, "matmul_ms": matmul}


TOP_ROLES = 12


def role_of(node: str) -> str:
    """A node's place with the layer index taken out, so the 24 copies of one node sum together:
    "/encoder/layers.7/self_attn/Transpose_2" -> "layers.*/self_attn/Transpose_2"."""
    tail = re.sub(r"layers\.\d+", "layers.*", node).lstrip("/")
    return tail.split("/", 1)[1] if tail.startswith("encoder/") else tail


def markdown(result: dict, machine: str) -> str:
    kernel = result["kernel_ms"]
    lines = [f"## {result['precision']} (`{result['file']}`), {result['seconds']:g} s ({result['frames']} frames), "
             f"batch 1, {result['threads']} threads", "",
             f"Machine: {machine}. Per call, mean of {result['runs']} profiled calls after an untimed one: "
             f"run {result['run_ms']:.0f} ms, kernels {kernel:.0f} ms, of which matrix multiply "
             f"{result['matmul_ms']:.0f} ms ({100 * result['matmul_ms'] / kernel:.1f}%).", "",
             "| op type | ms per call | share | nodes | matmul |", "|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['op']} | {r['ms']:.1f} | {100 * r['share']:.1f}% | {r['nodes']} | "
                     f"{'yes' if r['matmul'] else ''} |")
    lines += ["", f"Largest non-matmul nodes, each summed over its copies in every layer (top {TOP_ROLES}):", "",
              "| op type | node (layer index removed) | ms per call | share | nodes |", "|---|---|---:|---:|---:|"]
    for r in result["roles"]:
        lines.append(f"| {r['op']} | `{r['role']}` | {r['ms']:.1f} | {100 * r['ms'] / kernel:.1f}% | {r['nodes']} |")
    return "\n".join(lines) + "\n"


def study_arguments(doc: str, precision: str, count: str, times: int) -> argparse.Namespace:
    """The command line this module and benchmarks.ceiling share: ARTIFACT, precisions, seconds, threads,
    how many calls (`count`), -o."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--precision", default=precision)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(f"--{count}", type=int, default=times)
    parser.add_argument("-o", "--out", type=Path)
    return parser.parse_args()


def write_study(args: argparse.Namespace, study, render, json_per_precision: bool = False) -> None:
    """Run `study(precision)` for each --precision, print the rendered results and write them to -o."""
    from exporter.machine import describe, machine
    from runtime.errors import W2VBertError

    text, here = "", describe(machine())
    for precision in args.precision.split(","):
        try:
            result = study(precision)
        except W2VBertError as exc:  # a wrong artifact or precision: its message, not a traceback
            raise SystemExit(f"{Path(sys.argv[0]).stem}: {exc}") from exc
        text += render(result, here) + "\n"
        if json_per_precision and args.out:
            args.out.with_suffix(f".{precision}.json").write_text(json.dumps(result, indent=1))
    print(text)
    if args.out:
        args.out.write_text(text)


def main() -> None:
    args = study_arguments(__doc__, "fp32", "runs", 3)
    write_study(args, lambda precision: profile(args.artifact, precision, args.seconds, args.threads, args.runs),
                markdown)


if __name__ == "__main__":
    main()
