"""How near the roof a variant is, and how near graph changes could bring it, round by round.

    python -m benchmarks.ceiling ARTIFACT [--precision fp32,int8] [--seconds 10] [--threads 2]
                                 [--rounds 6] [-o FILE.md]

`w2vbert benchmark` divides each model's FLOP rate by matmul peaks measured once, before the
grid. On a shared host those peaks move by 20-40% from one minute to the next, so here every
round measures them (benchmarks.peaks) immediately before one profiled call of the variant and
reports, against that round's peak:

* model: the whole call's FLOP rate (benchmarks.flops);
* ceiling: the matmul nodes' own rate (their FLOPs over their kernel time), what the model
  would reach if everything else took no time and the attention core ran as fast as they do;
* budget: the ms left at the bar for everything but the matmul nodes (the attention core
  included), next to the ms that takes now.

Medians over the rounds are what to read; single rounds show the host's noise.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.op_profile import (
    MATMUL_OPS,
    kernel_events,
    model_runs,
    profiled_session,
    study_arguments,
    write_study,
)

ATTENTION_OPS = frozenset({"MultiHeadAttention", "Attention"})
BARS = {"fp32": 92.0, "int8": 90.0}  # % of the measured roof the project asks of ours at 10 s, batch 1


def measure(artifact: Path, precision: str, seconds: float, threads: int, rounds: int, peaks=None) -> dict:
    from benchmarks.flops import attention_core_flops, model_flops
    from benchmarks.peaks import measure_peaks

    peaks = peaks or measure_peaks
    roof_key = "int8" if precision.startswith("int") else "fp32"
    with tempfile.TemporaryDirectory(prefix="w2vbert-ceiling-") as work:
        session, feeds, facts = profiled_session(artifact, precision, seconds, threads, Path(work))
        session.run(None, feeds)  # dropped: the profiled session's own first call
        roofs = []
        for index in range(rounds):
            roofs.append(peaks(threads)[roof_key])
            session.run(None, feeds)
            print(f"ceiling: {precision} round {index + 1}/{rounds}", flush=True)
        events = json.loads(Path(session.end_profiling()).read_text())
    calls = split_calls(events)[1:]
    flops = model_flops(facts["config"], facts["head"], facts["frames"])
    core = attention_core_flops(facts["config"], facts["frames"])
    rows = []
    for roof, call in zip(roofs, calls):
        # the attention core's FLOPs are in the matmul nodes' count only where no attention node holds them
        matmul_flops = flops - (core if call["attention_ms"] else 0)
        budget = flops / (BARS[roof_key] / 100 * roof * 1e9) * 1e3 - call["matmul_ms"]
        rows.append({"roof": roof, "run_ms": call["run_ms"], "matmul_ms": call["matmul_ms"],
                     "model_pct": 100 * flops / (call["run_ms"] / 1e3) / (roof * 1e9),
                     "ceiling_pct": 100 * matmul_flops / (call["matmul_ms"] / 1e3) / (roof * 1e9),
                     "other_ms": call["run_ms"] - call["matmul_ms"], "attention_ms": call["attention_ms"],
                     "budget_ms": budget})
    medians = {key: statistics.median(r[key] for r in rows) for key in rows[0]} if rows else {}
    return {**{k: v for k, v in facts.items() if k != "config"}, "rounds": rows, "median": medians,
            "bar": BARS[roof_key], "roof_key": roof_key, "gflop": flops / 1e9}


def split_calls(events: list[dict]) -> list[dict]:
    """Per model_run event of an onnxruntime profile: its wall ms, the matmul nodes' kernel ms and the
    attention nodes' kernel ms (node events belong to the run whose span holds them)."""
    calls = [{"start": r["ts"], "end": r["ts"] + r["dur"], "run_ms": r["dur"] / 1e3, "matmul_ms": 0.0,
              "attention_ms": 0.0} for r in model_runs(events)]
    for op, _, start, duration in kernel_events(events):
        call = next((c for c in calls if c["start"] <= start <= c["end"]), None)
        if call is None:
            continue
        if op in MATMUL_OPS:
            call["matmul_ms"] += duration / 1e3
        elif op in ATTENTION_OPS:
            call["attention_ms"] += duration / 1e3
    return [{k: v for k, v in c.items() if k not in ("start", "end")} for c in calls]


def markdown(result: dict, machine: str) -> str:
    unit = "GOP/s" if result["roof_key"] == "int8" else "GFLOP/s"
    med = result["median"]
    lines = [f"## {result['precision']} (`{result['file']}`), {result['seconds']:g} s ({result['frames']} frames), "
             f"batch 1, {result['threads']} threads, {result['gflop']:.3g} GFLOP per call", "",
             f"Machine: {machine}. Bar: {result['bar']:g}% of the {result['roof_key']} roof.", "",
             f"| round | roof {unit} | run ms | matmul ms | model % of roof | ceiling % | other ms | "
             f"of which attention | budget ms at the bar |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    labelled = [(str(i), r) for i, r in enumerate(result["rounds"], 1)] + ([("median", med)] if med else [])
    for label, r in labelled:
        lines.append(f"| {label} | {r['roof']:.0f} | {r['run_ms']:.1f} | {r['matmul_ms']:.1f} | "
                     f"{r['model_pct']:.1f}% | {r['ceiling_pct']:.1f}% | {r['other_ms']:.1f} | "
                     f"{r['attention_ms']:.1f} | {r['budget_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = study_arguments(__doc__, "fp32,int8", "rounds", 6)
    write_study(args, lambda precision: measure(args.artifact, precision, args.seconds, args.threads, args.rounds),
                markdown, json_per_precision=True)


if __name__ == "__main__":
    main()
