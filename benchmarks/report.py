"""Benchmark output: terminal table, results.json, results.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from .harness import SPIN_PAUSE

BASELINE = "transformers eager"


def _rows(data: dict) -> list[dict]:
    facts = data["backends"]
    baseline = {(r["duration"], r["batch"]): r["latency"]["median"] for r in data["results"]
                if r["backend"] == BASELINE}
    rows = []
    for r in data["results"]:
        base = baseline.get((r["duration"], r["batch"]))
        fact = facts.get(r["backend"], {})
        rows.append({
            "backend": r["backend"], "audio": f"{r['duration']:g} s x{r['batch']}",
            "median_ms": r["latency"]["median"] * 1e3, "min_ms": r["latency"]["min"] * 1e3,
            "p90_ms": r["latency"]["p90"] * 1e3, "rtf": r["real_time_factor"],
            "audio_s_per_s": r["audio_seconds_per_second"], "gflops": r["gflops"],
            "peak_pct": r["percent_of_peak"], "speedup": (base / r["latency"]["median"]) if base else None,
            "load_s": fact.get("load_seconds"), "rss_mb": (fact.get("peak_rss_bytes") or 0) / 1e6,
            "size_mb": (fact.get("file_bytes") or 0) / 1e6 or None,
            "per_core": r["audio_seconds_per_second"] / data["grid"]["threads"],
            "parity": _parity_cell(fact.get("parity"), r["backend"]),
        })
    return rows


COLUMNS = [("backend", "backend", "{}"), ("audio", "audio x batch", "{}"), ("median_ms", "median ms", "{:.1f}"),
           ("min_ms", "min ms", "{:.1f}"), ("p90_ms", "p90 ms", "{:.1f}"), ("rtf", "RTF", "{:.4f}"),
           ("audio_s_per_s", "audio s/s", "{:.1f}"), ("per_core", "audio s/s/core", "{:.2f}"),
           ("speedup", "vs transformers", "{:.2f}x"), ("parity", "max abs / scaled error", "{}"),
           ("gflops", "GFLOP/s", "{:.1f}"), ("peak_pct", "% of peak", "{:.0f}%"),
           ("load_s", "load s", "{:.1f}"), ("rss_mb", "peak RSS MB", "{:.0f}"), ("size_mb", "file MB", "{:.1f}")]


def _parity_cell(parity: dict | None, name: str) -> str | None:
    """'max abs / scaled' error of a backend's output against the reference backend's."""
    if not parity:
        return None
    if "error" in parity:
        return parity["error"]
    if name == parity["against"]:
        return "(the reference)"
    return f"{parity['max_abs']:.2e} / {parity['scaled']:.1e}"


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row[key]
    return "-" if value is None else fmt.format(value)


def print_table(data: dict, stream=None) -> None:
    """A rich table on a terminal; the Markdown table elsewhere (a pipe or a file), which no terminal
    width cuts short."""
    import sys

    stream = stream or sys.stdout
    rows = _rows(data)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    if Console is None or not stream.isatty():
        print(markdown_table(rows), file=stream)
        for name, reason in data["skipped"]:
            print(f"skipped {name}: {reason}", file=stream)
        return
    table = Table(title=f"w2vbert benchmark: {data['model']['label']} ({data['grid']['threads']} threads)")
    for _, title, _ in COLUMNS:
        text = title.startswith(("backend", "audio"))
        table.add_column(title, justify="left" if text else "right", no_wrap=text)
    for row in rows:
        table.add_row(*[_cell(row, key, fmt) for key, _, fmt in COLUMNS])
    console = Console(file=stream, width=max(Console(file=stream).width, 150))
    console.print(table)
    for name, reason in data["skipped"]:
        console.print(f"skipped {name}: {reason}")


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key, fmt) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def _machine_line(machine: dict) -> str:
    """The CPU with its instruction set and int8 kernel (results.json files written before they
    were recorded name only the CPU)."""
    from exporter.machine import describe

    return describe(machine) if "int8_kernel" in machine else f"{machine['cpu']}, {machine['cores']} cores"


def _peaks_after(data: dict) -> str:
    after = data.get("peaks_after")
    if not after:
        return ""
    return (f"; after the grid fp32 {after['fp32']:.0f}, int8 {after['int8']:.0f}: \"% of peak\" divides by the "
            "first and moves with it (`python -m benchmarks.ceiling` measures the roof before every call)")


def write_markdown(data: dict, path: Path, command: str) -> None:
    machine, peaks = data["machine"], data["peaks"]
    lines = [f"# Benchmark: {data['model']['label']}", "",
             f"Command: `{command}`", "",
             f"Machine: {_machine_line(machine)}; {data['grid']['threads']} threads. "
             f"Measured peaks: fp32 {peaks['fp32']:.0f} GFLOP/s, int8 {peaks['int8']:.0f} GOP/s"
             + (f", bf16 {peaks['bf16']:.0f} GFLOP/s" if "bf16" in peaks else "")
             + f" (the fastest engine's 500x1024x4096 matmul with a constant weight, see results.json)"
             f"{_peaks_after(data)}.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".", "",
             f"Grid: durations {data['grid']['durations']} s, batches {data['grid']['batches']}, "
             f"{data['grid']['warmup']} warm-up + {data['grid']['repeats']} interleaved runs per case; "
             "each backend in its own process (peak RSS is that process's high-water mark, loading included); "
             + (f"threads spin-wait as each library does by default (--spin), {SPIN_PAUSE} s pause between runs."
                if data["grid"].get("spin") else "OpenMP and onnxruntime threads sleep when idle (no spin-wait)."),
             "Error: each backend's first output for one input (batch 1, the first duration) against "
             f"{_against(data)}'s, max abs and divided by the reference's largest magnitude.",
             "", markdown_table(_rows(data)), ""]
    for name, reason in data["skipped"]:
        lines.append(f"- skipped **{name}**: {reason}")
    path.write_text("\n".join(lines) + "\n")


def _against(data: dict) -> str:
    return next((f["parity"]["against"] for f in data["backends"].values() if f.get("parity")), "no reference")


def write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def plot(data: dict, out_dir: Path) -> list[Path]:
    """One PNG per batch: horizontal bars of the speed-up vs transformers eager (labelled with the figure)
    when the run has one duration, lines of latency and speed-up across durations otherwise; the legend
    outside the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for batch in data["grid"]["batches"]:
        results = [r for r in data["results"] if r["batch"] == batch]
        if not results:
            continue
        durations = sorted({r["duration"] for r in results})
        fig = _bars(plt, results, durations[0]) if len(durations) == 1 else _lines(plt, results, durations)
        fig.suptitle(f"{data['model']['label']}, batch {batch}")
        fig.tight_layout()
        path = out_dir / f"latency_batch{batch}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _bars(plt, results: list[dict], duration: float):
    base = next((r["latency"]["median"] for r in results if r["backend"] == BASELINE), None)
    rows = sorted(results, key=lambda r: r["latency"]["median"], reverse=True)  # fastest at the top
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    values = [base / r["latency"]["median"] if base else r["latency"]["median"] * 1e3 for r in rows]
    bars = ax.barh([r["backend"] for r in rows], values, color="tab:blue")
    labels = [f"{v:.2f}x ({r['latency']['median'] * 1e3:.0f} ms)" if base else f"{v:.0f} ms"
              for v, r in zip(values, rows)]
    ax.bar_label(bars, labels, padding=3, fontsize=8)
    if base:
        ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel(f"speed-up vs {BASELINE} ({duration:g} s of audio)" if base else
                  f"median latency, ms ({duration:g} s of audio)")
    ax.set_xlim(0, max(values) * 1.3)
    return fig


def _lines(plt, results: list[dict], durations: list[float]):
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    base = {r["duration"]: r["latency"]["median"] for r in results if r["backend"] == BASELINE}
    for name in dict.fromkeys(r["backend"] for r in results):
        mine = sorted((r["duration"], r["latency"]["median"]) for r in results if r["backend"] == name)
        left.plot([d for d, _ in mine], [t * 1e3 for _, t in mine], marker="o", label=name)
        if base:
            right.plot([d for d, _ in mine], [base[d] / t for d, t in mine if d in base], marker="o", label=name)
    left.set(xscale="log", yscale="log", xlabel="audio duration (s)", ylabel="median latency (ms)", title="latency")
    right.set(xscale="log", xlabel="audio duration (s)", ylabel="speed-up (x)",
              title=f"speed-up vs {BASELINE}" if base else "no transformers baseline")
    right.axhline(1.0, color="grey", linewidth=0.8)
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.set_xticks(durations, [f"{d:g}" for d in durations])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(True, which="both", alpha=0.3)
    right.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    handles, names = left.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", bbox_to_anchor=(0.5, -0.02 - 0.045 * len(names) / 2),
               ncol=2, fontsize=8, frameon=False)
    return fig
