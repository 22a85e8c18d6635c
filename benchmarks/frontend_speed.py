"""Front-end speed: runtime.FeatureExtractor vs transformers' SeamlessM4TFeatureExtractor.

    python -m benchmarks.frontend_speed [--seconds 30] [--repeats 21]

Both run in this process on the same waveforms, interleaved (A B A B ...) after a
warm-up, so machine drift hits both alike; the ratio of medians is reported. A third
column times the float64 FFT alone for as many frames (random ones, the extractor's
block size and FFT call): the floor an exact numpy front end cannot go below here.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0, 30.0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/frontend.md"))
    args = parser.parse_args(argv)
    import transformers

    from benchmarks.run import cpu_name
    from exporter.artifact import tool_versions
    from exporter.checkpoint import BUNDLED
    from runtime.audio import load_audio
    from runtime.features import BLOCK, FFT_LENGTH, FRAME_LENGTH, HOP_LENGTH, FeatureExtractor, _rfft

    ours, theirs = FeatureExtractor(), transformers.SeamlessM4TFeatureExtractor()
    speech = np.concatenate([load_audio(p) for p in sorted((BUNDLED / "samples").glob("*.wav"))])
    rows = []
    for seconds in args.seconds:
        n = int(seconds * 16000)
        wave = np.resize(speech, n).astype(np.float32)  # real speech, repeated to length
        a = ours(wave)[0]
        b = theirs(wave, sampling_rate=16000, return_tensors="np")["input_features"]
        err = float(np.abs(a - b).max())
        frames = np.random.default_rng(0).standard_normal((BLOCK, FFT_LENGTH))
        spectrum = np.empty((BLOCK, FFT_LENGTH // 2 + 1), dtype=np.complex128)
        count = 1 + (n - FRAME_LENGTH) // HOP_LENGTH

        def fft_only():
            for lo in range(0, count, BLOCK):
                m = min(BLOCK, count - lo)
                _rfft(frames[:m], spectrum[:m])

        times = {"ours": [], "transformers": [], "fft": []}
        for _ in range(args.repeats):
            for name, fn in (("ours", lambda: ours(wave)),
                             ("transformers", lambda: theirs(wave, sampling_rate=16000)), ("fft", fft_only)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        low = {k: float(np.min(v)) * 1e3 for k, v in times.items()}
        rows.append((seconds, med, low, med["transformers"] / med["ours"], err))
        print(f"{seconds:5.1f} s: ours {med['ours']:.2f} ms, transformers {med['transformers']:.2f} ms, "
              f"{med['transformers'] / med['ours']:.1f}x, max abs diff {err:.1e}", flush=True)
    lines = ["# Front-end speed: `runtime.FeatureExtractor` vs transformers `SeamlessM4TFeatureExtractor`", "",
             f"Command: `python -m benchmarks.frontend_speed --repeats {args.repeats}`; one utterance of real "
             "(synthetic) speech, interleaved runs after a warm-up, single process.", "",
             "| audio | ours median (min) | transformers median (min) | speed-up (medians) | max abs diff "
             "| float64 FFT alone (share of transformers) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for seconds, med, low, ratio, err in rows:
        lines.append(f"| {seconds:g} s | {med['ours']:.2f} ms ({low['ours']:.2f}) | "
                     f"{med['transformers']:.2f} ms ({low['transformers']:.2f}) | {ratio:.1f}x | {err:.1e} "
                     f"| {med['fft']:.2f} ms ({med['fft'] / med['transformers']:.1%}) |")
    lines += ["", f"Machine: {cpu_name()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
              f"numpy {np.__version__}; " + ", ".join(f"{k} {v}" for k, v in tool_versions().items()), ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
