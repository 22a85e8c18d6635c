"""Front-end speed: runtime.FeatureExtractor vs transformers' SeamlessM4TFeatureExtractor.

    python -m benchmarks.frontend_speed [--seconds 1 10 30] [--repeats 21]

All run in this process on the same waveform, interleaved (A B C A B C ...) after a
warm-up, so machine drift hits them alike; ratios are of medians. Ours runs twice: with
the numba kernel (the default when numba is installed) and with the numpy path
(`use_numba=False`). Stage times and what was tried: benchmarks/results/frontend-notes.md.
"""

from __future__ import annotations

import argparse
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

    from exporter.model.sources import BUNDLED
    from runtime.audio import load_audio
    from runtime.features import FeatureExtractor

    runners = {"numba": FeatureExtractor(), "numpy": FeatureExtractor(use_numba=False)}
    if not runners["numba"].compiled:
        print("the numba front end is unavailable (see the log): only the numpy path is timed", flush=True)
        del runners["numba"]
    theirs = transformers.SeamlessM4TFeatureExtractor()
    speech = np.concatenate([load_audio(p) for p in sorted((BUNDLED / "samples").glob("*.wav"))])
    rows = [measure(runners, theirs, np.resize(speech, int(s * 16000)).astype(np.float32), s, args.repeats)
            for s in args.seconds]  # real speech, repeated to length
    write_report(args, list(runners), rows)


def measure(runners: dict, theirs, wave: np.ndarray, seconds: float, repeats: int):
    """(seconds, median ms, min ms, max abs diff vs transformers) for one length, runs interleaved."""
    expected = theirs(wave, sampling_rate=16000, return_tensors="np")["input_features"]
    err = {name: float(np.abs(fe(wave)[0] - expected).max()) for name, fe in runners.items()}
    jobs = {name: (lambda fe=fe: fe(wave)) for name, fe in runners.items()}
    jobs["transformers"] = lambda: theirs(wave, sampling_rate=16000)
    times = {name: [] for name in jobs}
    for _ in range(repeats + 1):  # the first round is a warm-up, left out below
        for name, fn in jobs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: float(np.median(v[1:])) * 1e3 for k, v in times.items()}
    low = {k: float(np.min(v[1:])) * 1e3 for k, v in times.items()}
    print(f"{seconds:5.1f} s: " + ", ".join(f"{name} {med[name]:.2f} ms ({med['transformers'] / med[name]:.1f}x)"
                                           for name in runners) +
          f", transformers {med['transformers']:.2f} ms, max abs diff " +
          ", ".join(f"{e:.1e}" for e in err.values()), flush=True)
    return seconds, med, low, err


def write_report(args, names: list[str], rows) -> None:
    from .study import write_study

    head = [f"ours, {name} median (min)" for name in names] + ["transformers median (min)"]
    head += [f"speed-up, {name}" for name in names] + ["max abs diff (" + " / ".join(names) + ")"]
    lines = ["# Front-end speed: `runtime.FeatureExtractor` vs transformers `SeamlessM4TFeatureExtractor`", "",
             f"Command: `python -m benchmarks.frontend_speed --repeats {args.repeats}`; one utterance of real "
             "(synthetic) speech, interleaved runs after a warm-up, single process, one thread each. "
             "`numba`: the default when numba is installed (runtime/fbank_numba.py); `numpy`: "
             "`FeatureExtractor(use_numba=False)`, the path without numba.", "",
             "| audio | " + " | ".join(head) + " |", "|---:" * (len(head) + 1) + "|"]
    for seconds, med, low, err in rows:
        cells = [f"{med[k]:.2f} ms ({low[k]:.2f})" for k in names + ["transformers"]]
        cells += [f"{med['transformers'] / med[k]:.1f}x" for k in names]
        cells.append(" / ".join(f"{err[k]:.1e}" for k in names))
        lines.append(f"| {seconds:g} s | " + " | ".join(cells) + " |")
    versions = {"numpy": np.__version__}
    if "numba" in names:
        import numba
        versions["numba"] = numba.__version__
    write_study(args.out, lines, extra=versions, echo=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
