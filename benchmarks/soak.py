"""Soak and long-input studies of the runtime, each in a fresh process so RSS is its own.

    python -m benchmarks.soak soak ARTIFACT [--calls 1000] [--warmup 100]
    python -m benchmarks.soak long ARTIFACT [--minutes 10]

`soak`: consecutive Session.run calls of mixed lengths; resident memory after warm-up vs at
the end. `long`: one recording of MINUTES built from the bundled samples (with pauses)
through Session.transcribe (chunked), reporting the peak RSS (VmHWM) and whether every
sample's words came out. Both print one JSON line; the tests assert on it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _status(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def soak(artifact: str, calls: int, warmup: int) -> dict:
    from runtime import Session

    session = Session(artifact, threads=1)
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 300, size=calls + warmup)
    inputs = {n: rng.standard_normal((1, n, session.feature_dim)).astype(np.float32) for n in set(lengths.tolist())}
    for n in lengths[:warmup]:
        session.run(inputs[n])
    after_warmup = _status("VmRSS")
    started = time.perf_counter()
    for n in lengths[warmup:]:
        session.run(inputs[n])
    end = _status("VmRSS")
    return {"calls": calls, "warmup": warmup, "rss_after_warmup": after_warmup, "rss_end": end,
            "growth": end / after_warmup - 1, "seconds": time.perf_counter() - started}


def long_recording(minutes: float):
    """(waveform, expected words): the bundled samples repeated, 0.5 s of silence between them."""
    from exporter.checkpoint import BUNDLED
    from runtime.audio import load_audio

    folder = BUNDLED / "samples"
    texts = json.loads((folder / "transcripts.json").read_text())
    pieces, words, total, gap = [], [], 0, np.zeros(8000, np.float32)
    samples = sorted(folder.glob("*.wav"))
    while total < minutes * 60 * 16000:
        for path in samples:
            wave = load_audio(path)
            pieces += [wave, gap]
            words += texts[path.name]["text"].split()
            total += len(wave) + len(gap)
    return np.concatenate(pieces), words


def long_audio(artifact: str, minutes: float) -> dict:
    from runtime import Session
    from runtime.decode import edit_distance

    wave, words = long_recording(minutes)
    session = Session(artifact)
    started = time.perf_counter()
    text = session.transcribe(wave)[0]
    got = text.split()
    return {"minutes": len(wave) / 16000 / 60, "peak_rss": _status("VmHWM"), "words": len(words),
            "word_errors": edit_distance(got, words), "seconds": time.perf_counter() - started}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("study", choices=["soak", "long"])
    parser.add_argument("artifact")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    result = soak(args.artifact, args.calls, args.warmup) if args.study == "soak" else \
        long_audio(args.artifact, args.minutes)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
