"""Where the numba front end's time goes: each step of runtime/fbank_numba.py timed on its own.

    python -m benchmarks.frontend_stages [--seconds 30] [--repeats 50]

Each step runs over every group of 8 frames in a loop of its own (compiled like the real
kernel, from the same inline functions), so the steps' sum can differ from the fused
kernel's time: there a group's workspace stays in L1 from one step to the next.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    from exporter.checkpoint import BUNDLED
    from runtime import fbank_numba as k
    from runtime.audio import load_audio
    from runtime.features import FRAME_LENGTH, HOP_LENGTH, FeatureExtractor

    jit = numba.njit(**k._FLAGS)  # the kernel's fastmath flags: inlined steps compile with their caller's

    @jit
    def load(wave, count, window, ws):
        for first in range(0, count, k.GROUP):
            k._load_group(wave, first, count, window, ws)

    @jit
    def fft(count, ws, c1, s1, c2, s2, c3, s3, lanes):
        for _ in range(0, count, k.GROUP):
            k.fft512(ws, c1, s1, c2, s2, c3, s3, lanes)

    @jit
    def power(count, ws, buffer, rows):
        for _ in range(0, count, k.GROUP):
            k._power(ws, buffer, rows)

    @jit
    def mel(count, buffer, starts, ends, weights, out):
        for first in range(0, count, k.GROUP):
            k._mel(buffer, starts, ends, weights, out, first, count)

    speech = np.concatenate([load_audio(p) for p in sorted((BUNDLED / "samples").glob("*.wav"))])
    wave = np.resize(speech, int(args.seconds * 16000)).astype(np.float32)
    extractor = FeatureExtractor(use_numba=True)
    fb = extractor._compiled
    count = 1 + (len(wave) - FRAME_LENGTH) // HOP_LENGTH
    ws, buffer = np.zeros(2 * k.PLANE), np.zeros(k.GROUP * 257)
    out = np.empty((count, extractor.num_mel_bins), np.float32)
    steps = {
        "frames: DC, pre-emphasis, window (_load_group)": lambda: load(wave, count, fb.window, ws),
        "float64 FFT, radix 8 (fft512)": lambda: fft(count, ws, *fb.twiddles, k.LANES),
        "power of both frames per lane (_power)": lambda: power(count, ws, buffer, fb.rows),
        "mel filters (_mel)": lambda: mel(count, buffer, fb.starts, fb.ends, fb.weights, out),
        "floor + log (numpy)": lambda: (np.maximum(out, 1e-7, out=out), np.log(out, out=out)),
        "normalisation (normalize_in_place)": lambda: fb.normalize(out),
        "whole extractor call": lambda: extractor(wave),
    }
    print(f"{args.seconds:g} s of speech, {count} frames, median of {args.repeats} runs")
    for name, step in steps.items():
        step()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        print(f"| {name} | {np.median(times) * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
