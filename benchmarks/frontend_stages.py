"""Where the numba front end's time goes: the kernel of runtime/fbank_numba.py cut after each step.

    python -m benchmarks.frontend_stages [--seconds 30] [--repeats 50]

The kernel's group loop is compiled four times from the same inline steps, stopping
after framing, the FFT, the power step and the mel step, on real speech; a step's time is
the difference between consecutive cuts (each cut runs on real data: an FFT repeated on
its own output would overflow to Inf/NaN within a few hundred passes).
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
    from exporter.model.sources import BUNDLED
    from runtime import fbank_numba as k
    from runtime.audio import load_audio
    from runtime.features import FRAME_LENGTH, HOP_LENGTH, MEL_FLOOR, FeatureExtractor

    @numba.njit(**k._FLAGS)  # the kernel's fastmath flags: inlined steps compile with their caller's
    def cut(steps, wave, count, window, ws, power, cos1, sin1, cos2, sin2, rows, starts, ends, weights, out, lanes):
        for first in range(0, count, k.GROUP):
            k._load_group(wave, first, count, window, ws)
            if steps > 1:
                k.fft512(ws, cos1, sin1, cos2, sin2, lanes)
            if steps > 2:
                k._power(ws, power, rows)
            if steps > 3:
                k._mel(power, starts, ends, weights, out, first, count)

    speech = np.concatenate([load_audio(p) for p in sorted((BUNDLED / "samples").glob("*.wav"))])
    wave = np.resize(speech, int(args.seconds * 16000)).astype(np.float32)
    extractor = FeatureExtractor(use_numba=True)
    fb = extractor._compiled
    count = 1 + (len(wave) - FRAME_LENGTH) // HOP_LENGTH
    ws, power = np.zeros(2 * k.PLANE), np.zeros(k.GROUP * 257)
    out = np.empty((count, extractor.num_mel_bins), np.float32)

    def timed(step) -> float:
        step()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1e3

    from exporter.machine import describe

    print(f"{args.seconds:g} s of speech, {count} frames, median of {args.repeats} runs; {describe()}")
    names = ["frames: DC, pre-emphasis, window (_load_group)", "float64 FFT, radix 8 (fft512)",
             "power of both frames per lane (_power)", "mel filters (_mel)"]
    before = 0.0
    for steps, name in enumerate(names, 1):
        total = timed(lambda steps=steps: cut(steps, wave, count, fb.window, ws, power, *fb.twiddles, fb.rows,
                                              fb.starts, fb.ends, fb.weights, out, k.LANES))
        print(f"| {name} | {total - before:.2f} ms | (kernel up to here: {total:.2f} ms)")
        before = total
    assert np.isfinite(out).all()
    floor_log = timed(lambda: (np.maximum(out, MEL_FLOOR, out=out), np.log(out, out=out)))
    print(f"| floor + log (numpy) | {floor_log:.2f} ms |")
    print(f"| normalisation (normalize_in_place) | {timed(lambda: fb.normalize(out)):.2f} ms |")
    print(f"| whole extractor call | {timed(lambda: extractor(wave)):.2f} ms |")


if __name__ == "__main__":
    main()
