"""int8 operand formats: their error on real speech per instruction set, and their speed.

    python -m benchmarks.int8_formats [ARTIFACT] [--emulate Nehalem-v2] [--frames 500] [--threads 2]
                                      [--repeats 5] [--out benchmarks/results/int8-formats.md]

Accuracy: the bundled model is exported (fp32) and quantized in every format below through
exporter.quantize.convert (the export's own path), then each is judged by exporter.quantize.gates.evaluate
against fp32 on the gate's held-out speech: natively, and once per `--emulate CPU` in a
child process under `qemu-x86_64 -cpu CPU` (Debian's qemu-user). qemu makes onnxruntime
see that CPU's CPUID, so it runs that instruction set's int8 kernels: `Nehalem-v2` (SSE4.2)
sums u8 x s8 products exactly, as VNNI and AMX do, where AVX2 saturates (exporter.machine).
Speed: with ARTIFACT (an fp32 artifact, e.g. `w2vbert export w2v-bert-2.0 -o ART`), each
format of its model is timed in this process, interleaved (A B C, B C A, ...), on one input.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import time_interleaved
from exporter.quantize.convert import Int8Format

# label -> (precision, format); the defaults are what `w2vbert export` writes.
FORMATS = {
    "dynamic U8S8, 8-bit weights": ("int8", Int8Format(reduce_range=False)),
    "dynamic U8S8, 7-bit weights (default)": ("int8", Int8Format()),
    "dynamic U8U8, 8-bit weights": ("int8", Int8Format(weights="uint8", reduce_range=False)),
    "QDQ S8S8, 8-bit weights": ("int8-qdq", Int8Format(reduce_range=False)),
    "QDQ S8S8, 7-bit weights (default)": ("int8-qdq", Int8Format()),
}
# The other reduced precisions, for their error per instruction set (not timed here).
OTHERS = {"fp16": ("fp16", Int8Format()), "int4 (MatMulNBits, weight-only)": ("int4", Int8Format())}
METRICS = ("scaled_error", "cosine", "cer")
READING = [
    "AVX2 (and AVX-512 without VNNI) adds pairs of u8 x s8 products into a saturating int16 "
    "(VPMADDUBSW); SSE4.2, like VNNI and AMX, sums them exactly in int32. With full-range int8 "
    "weights the pair sums overflow on AVX2 and the error depends on the CPU; with 7-bit weights "
    "(onnxruntime's reduce_range) they cannot, and the error is the same on both. qemu's emulated "
    "AVX2 CPU reproducing the native AVX2 figures shows the emulation runs the same kernels.",
]


def build(fp32: Path, folder: Path, calibration, formats: dict) -> dict[str, Path]:
    """Every format of `fp32` into `folder`, as the export builds it (SkipLayerNormalization unfused)."""
    from exporter.quantize.convert import quantize

    out = {}
    for i, (label, (precision, fmt)) in enumerate(formats.items()):
        out[label] = folder / f"format{i}.onnx"
        quantize(fp32, out[label], precision, calibration=calibration, int8_format=fmt)
        print("built", label, flush=True)
    return out


def gate_figures(folder: Path) -> dict[str, dict[str, float]]:
    """Gate metrics of every format in `folder` (written by prepare_accuracy) on this process's CPU."""
    from exporter.parity.runners import ort_runner
    from exporter.quantize.gates import evaluate

    meta = json.loads((folder / "meta.json").read_text())
    data = np.load(folder / "gate.npz")
    batches = [(data[f"features{i}"], data[f"mask{i}"]) for i in range(meta["batches"])]
    reference = ort_runner(folder / meta["reference"])
    figures = {}
    for label, (precision, name) in meta["formats"].items():
        result = evaluate(precision, meta["head"], meta["config"], reference, ort_runner(folder / name), batches)
        figures[label] = {k: result.metrics[k] for k in METRICS if k in result.metrics}
    return figures


def prepare_accuracy(folder: Path) -> None:
    """Export the bundled model, build every format, save the gate's held-out batches."""
    from exporter.export import export
    from exporter.quantize.calibration import calibration_feeds, held_out_batches

    artifact = export(None, folder / "bundled")
    manifest = json.loads((artifact / "manifest.json").read_text())
    pre, dim, min_frames = manifest["preprocessor"], manifest["config"]["feature_projection_input_dim"], \
        manifest["min_frames"]
    fp32 = artifact / "model.fp32.onnx"
    models = build(fp32, folder, calibration_feeds(None, pre, dim, min_frames), {**FORMATS, **OTHERS})
    batches = held_out_batches(None, pre, dim, min_frames)
    np.savez(folder / "gate.npz", **{f"features{i}": f for i, (f, _) in enumerate(batches)},
             **{f"mask{i}": m for i, (_, m) in enumerate(batches)})
    meta = {"head": manifest["head"], "config": manifest["config"], "batches": len(batches),
            "reference": str(fp32.relative_to(folder)),
            "formats": {k: [{**FORMATS, **OTHERS}[k][0], p.name] for k, p in models.items()}}
    (folder / "meta.json").write_text(json.dumps(meta))


def emulated(folder: Path, cpu: str) -> dict[str, dict[str, float]]:
    """gate_figures in a child process that qemu-user runs as CPU `cpu`."""
    out = folder / f"figures-{cpu}.json"
    command = ["qemu-x86_64", "-cpu", cpu, sys.executable, "-m", "benchmarks.int8_formats",
               "--evaluate", str(folder), "--figures", str(out)]
    print("running the accuracy part under", " ".join(command[:3]), "(slow: emulated)", flush=True)
    try:
        subprocess.run(command, check=True, cwd=str(Path(__file__).resolve().parents[1]),
                       stderr=subprocess.DEVNULL, timeout=3600)
    except FileNotFoundError as exc:
        raise SystemExit("--emulate needs qemu-x86_64 (apt-get install qemu-user)") from exc
    return json.loads(out.read_text())


def cpuid_kernel() -> str:
    """The int8 kernel for the CPUID this process sees. Under qemu-user /proc/cpuinfo (what
    py-cpuinfo reads) still describes the host; numpy's start-up detection asks CPUID itself."""
    from numpy._core._multiarray_umath import __cpu_features__

    from exporter.machine import int8_kernel

    names = {"AVX2": "avx2", "FMA3": "fma", "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512DQ": "avx512dq",
             "AVX512VL": "avx512vl", "AVX512VNNI": "avx512_vnni"}  # numpy's names -> the kernel's
    return int8_kernel([linux for ours, linux in names.items() if __cpu_features__.get(ours)])[0]


def time_formats(artifact: Path, folder: Path, frames: int, threads: int, repeats: int) -> dict[str, list]:
    from exporter.quantize.calibration import calibration_feeds
    from runtime.ort_session import ort_session

    folder.mkdir(parents=True, exist_ok=True)
    models = build(artifact / "model.fp32.onnx", folder, calibration_feeds(None, {}, 160, 1), FORMATS)
    sessions = {k: ort_session(p, threads=threads) for k, p in models.items()}
    rng = np.random.default_rng(0)
    feed = {"input_features": rng.standard_normal((1, frames, 160)).astype(np.float32),
            "attention_mask": np.ones((1, frames), np.int64)}
    for s in sessions.values():
        s.run(None, feed)  # warm-up
    return time_interleaved({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, repeats)


def accuracy_table(figures: dict[str, dict]) -> list[str]:
    machines = list(figures)
    head = ("| format | " + " | ".join(f"scaled error, {m}" for m in machines) + " | "
            + " | ".join(f"cosine, {m}" for m in machines) + " | CER (all) |")
    lines = [head, "|---|" + "---:|" * (2 * len(machines) + 1)]
    for label in {**FORMATS, **OTHERS}:
        cells = [f"{figures[m][label]['scaled_error']:.4f}" for m in machines]
        cells += [f"{figures[m][label]['cosine']:.5f}" for m in machines]
        cers = sorted({f"{figures[m][label].get('cer', 0):.2f}" for m in machines})
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {' / '.join(cers)} |")
    return lines


def speed_table(times: dict[str, list]) -> list[str]:
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    best = min(med.values())
    lines = ["| format | median ms | min ms | vs fastest |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {med[k]:.0f} | {min(times[k]) * 1e3:.0f} | {med[k] / best:.2f}x |" for k in times]
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", type=Path, nargs="?", help="fp32 artifact to time the formats on")
    parser.add_argument("--emulate", default="", help="comma-separated qemu CPU models, e.g. Nehalem-v2")
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8-formats.md"))
    parser.add_argument("--evaluate", type=Path, help=argparse.SUPPRESS)  # the emulated child's job
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.evaluate:
        args.figures.write_text(json.dumps({"kernel": cpuid_kernel(), "figures": gate_figures(args.evaluate)}))
        return
    from exporter.machine import machine

    folder = Path(tempfile.mkdtemp(prefix="w2vbert-int8-"))
    prepare_accuracy(folder / "accuracy")
    figures = {f"{machine()['int8_kernel']} (native)": gate_figures(folder / "accuracy")}
    for cpu in filter(None, args.emulate.split(",")):
        child = emulated(folder / "accuracy", cpu)
        figures[f"{child['kernel']} (qemu {cpu})"] = child["figures"]
    times = time_formats(args.artifact, folder / "speed", args.frames, args.threads, args.repeats) \
        if args.artifact else None
    write_report(args, figures, times)


def write_report(args, figures, times) -> None:
    from .study import write_study

    command = " ".join(["python -m benchmarks.int8_formats", *(["ARTIFACT"] if args.artifact else []),
                        *([f"--emulate {args.emulate}"] if args.emulate else []),
                        *([f"--frames {args.frames} --threads {args.threads} --repeats {args.repeats}"]
                          if args.artifact else [])])
    lines = ["# int8 operand formats", "", f"Command: `{command}`", "",
             "## Error on real speech, per instruction set", "",
             "The bundled model, every format built by exporter.quantize.convert, judged by the export's gate "
             "(exporter.quantize.gates.evaluate) against fp32 on its held-out speech (bundled samples 1, 3, 5). "
             "Scaled error: max abs logit error / largest |logit|; cosine: lowest per utterance.", "",
             *accuracy_table(figures), "", *READING, ""]
    if times:
        lines += ["## Speed", "", f"ARTIFACT: `w2vbert export w2v-bert-2.0` (600M), {args.frames} frames, batch 1, "
                  f"{args.threads} threads, {args.repeats} interleaved runs, native.", "", *speed_table(times), ""]
    write_study(args.out, lines)


if __name__ == "__main__":
    main()
