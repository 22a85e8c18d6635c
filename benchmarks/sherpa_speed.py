"""sherpa-onnx (its Python API over its C++ core) against our runtime.Session on the bundled samples.

    python -m benchmarks.sherpa_speed [ARTIFACT] [--repeats 15] [--out benchmarks/results/sherpa.md]

ARTIFACT: an export with --sherpa-onnx (default: a fresh one of the bundled model). Both decode the
six bundled samples from 16 kHz audio to text (front end included), as one batch and one by one, at
1 and 2 threads; runs are interleaved (A B C D, B C D A, ...), medians reported.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import time_interleaved


def runners(artifact: Path, waves, threads: int) -> dict:
    import sherpa_onnx

    from exporter.targets.sherpa_onnx import decode_waves
    from runtime import Session

    rec = sherpa_onnx.OfflineRecognizer.from_fire_red_asr_ctc(
        model=str(artifact / "sherpa-onnx" / "model.onnx"), tokens=str(artifact / "sherpa-onnx" / "tokens.txt"),
        num_threads=threads)
    session = Session(artifact, threads=threads)

    def sherpa(batched: bool):
        return lambda: [s.result.text for s in decode_waves(rec, waves, batched)]

    return {f"sherpa-onnx, batch of {len(waves)}, {threads} thr": sherpa(True),
            f"sherpa-onnx, one by one, {threads} thr": sherpa(False),
            f"Session.transcribe, batch of {len(waves)}, {threads} thr": lambda: session.transcribe(waves),
            f"Session.transcribe, one by one, {threads} thr": lambda: [session.transcribe([w])[0] for w in waves]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", type=Path, nargs="?")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sherpa.md"))
    args = parser.parse_args(argv)
    from exporter.model.sources import BUNDLED
    from runtime.audio import load_audio

    waves = [load_audio(p) for p in sorted((BUNDLED / "samples").glob("*.wav"))]
    with tempfile.TemporaryDirectory(prefix="w2vbert-sherpa-") as tmp:
        artifact = args.artifact
        if artifact is None:
            from exporter.export import export

            artifact = export(None, Path(tmp) / "digits", sherpa_onnx=True)
        jobs = {**runners(artifact, waves, 1), **runners(artifact, waves, 2)}
        texts = {name: job() for name, job in jobs.items()}  # warm-up, and every backend agrees
        assert len({tuple(t) for t in texts.values()}) == 1, texts
        times = time_interleaved(jobs, args.repeats)
    write_report(args, times, sum(len(w) for w in waves) / 16000)


def write_report(args, times: dict, audio_seconds: float) -> None:
    from .study import write_study

    try:
        import importlib.metadata as md
        sherpa_version = md.version("sherpa-onnx")
    except Exception:  # noqa: BLE001 - only a label
        sherpa_version = "?"
    lines = ["# sherpa-onnx vs runtime.Session on the bundled samples", "",
             f"Command: `python -m benchmarks.sherpa_speed --repeats {args.repeats}`; the six bundled samples "
             f"({audio_seconds:.1f} s of audio), audio to text (front end included), interleaved runs.", "",
             "| backend | median ms | min ms | RTF |", "|---|---:|---:|---:|"]
    for name, values in times.items():
        med = float(np.median(values))
        lines.append(f"| {name} | {med * 1e3:.1f} | {min(values) * 1e3:.1f} | {med / audio_seconds:.4f} |")
    write_study(args.out, lines, extra={"sherpa-onnx": sherpa_version})


if __name__ == "__main__":
    main()
