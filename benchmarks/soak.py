"""Soak and long-input studies of the runtime, each in a fresh process so RSS is its own.

    python -m benchmarks.soak soak ARTIFACT [--calls 1000] [--warmup 100]
    python -m benchmarks.soak long ARTIFACT [--minutes 10] [--no-arena]

`soak`: consecutive Session.run calls of mixed lengths; resident memory after warm-up vs at
the end. `long`: one recording of MINUTES built from the bundled samples back to back
through Session.transcribe (chunked), reporting the peak RSS (VmHWM) and whether every
sample's words came out. Both print one JSON line; the tests assert on it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _status(field: str) -> int:
    from .worker import status_bytes

    value = status_bytes(field)
    if value is None:
        raise RuntimeError(f"{field} not in /proc/self/status (these studies need Linux)")
    return value


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
    """(waveform, expected words): the bundled samples back to back (each has its own noisy pauses;
    digital silence between them would be unlike anything the small model was trained on)."""
    from exporter.model.sources import BUNDLED
    from runtime.audio import load_audio

    folder = BUNDLED / "samples"
    texts = json.loads((folder / "transcripts.json").read_text())
    pieces, words, total = [], [], 0
    samples = sorted(folder.glob("*.wav"))
    while total < minutes * 60 * 16000:
        for path in samples:
            wave = load_audio(path)
            pieces.append(wave)
            words += texts[path.name]["text"].split()
            total += len(wave)
    return np.concatenate(pieces), words


def long_audio(artifact: str, minutes: float, arena: bool = True) -> dict:
    from runtime import Session
    from runtime.decode import edit_distance

    wave, words = long_recording(minutes)
    session = Session(artifact, memory_arena=arena)
    started = time.perf_counter()
    text = session.transcribe(wave)[0]
    # Characters without spaces: the model marks word gaps inside an utterance, not between two
    # utterances played back to back, so word boundaries there are not the property tested.
    got, expected = text.replace(" ", ""), "".join(words)
    return {"minutes": len(wave) / 16000 / 60, "peak_rss": _status("VmHWM"), "chars": len(expected),
            "char_errors": edit_distance(got, expected), "seconds": time.perf_counter() - started}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("study", choices=["soak", "long"])
    parser.add_argument("artifact")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--no-arena", action="store_true", help="Session(memory_arena=False)")
    args = parser.parse_args(argv)
    result = soak(args.artifact, args.calls, args.warmup) if args.study == "soak" else \
        long_audio(args.artifact, args.minutes, not args.no_arena)
    from exporter.machine import describe  # after the study: its RSS figures stay the runtime's

    print(json.dumps({**result, "machine": describe()}))


if __name__ == "__main__":
    main()
