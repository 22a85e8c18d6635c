"""One benchmark backend in its own process, driven over stdin/stdout with JSON lines.

    python -m benchmarks.worker '<backend spec JSON>' THREADS

Protocol: after loading it prints {"ready": true, "load_seconds": ..., "facts": {...}}; then for
each {"batch": B, "frames": T, "feature_dim": F, "seed": S} it runs once and
prints {"seconds": ...} (with "save": PATH it also saves its first output there, for
parity); {"quit": true} answers {"peak_rss_bytes": ...}. Inputs
are generated from the seed, so every backend sees identical arrays. Peak RSS is
this process's own high-water mark, so backends never share memory figures.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np


def inputs(batch: int, frames: int, feature_dim: int, seed: int):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((batch, frames, feature_dim)).astype(np.float32)
    return features, np.ones((batch, frames), dtype=np.int64)


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    spec, threads = json.loads(sys.argv[1]), int(sys.argv[2])
    from benchmarks.backends import build, first_output, prepare

    if "--prepare" in sys.argv[3:]:
        prepare(spec)  # a one-off run that only writes files (the plain export) before measuring
        return
    started = time.perf_counter()
    try:
        run = build(spec, threads)
    except Exception as exc:  # reported to the coordinator as a skip reason, not a crash
        reply({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    # a backend that reports what it really runs (OpenVINO's inference precision) is labelled with it
    reply({"ready": True, "load_seconds": time.perf_counter() - started, "facts": getattr(run, "facts", {})})
    cache = {}
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("quit"):
            break
        key = (command["batch"], command["frames"], command["feature_dim"], command["seed"])
        if key not in cache:
            cache.clear()
            cache[key] = inputs(*key)
        features, mask = cache[key]
        t0 = time.perf_counter()
        try:
            outputs = run(features, mask)
        except Exception as exc:  # the coordinator reports it: one engine failing must not end the run
            reply({"error": f"{type(exc).__name__}: {exc}"})
            continue
        seconds = time.perf_counter() - t0
        if command.get("save"):
            np.save(command["save"], first_output(outputs))
        reply({"seconds": seconds})
    reply({"peak_rss_bytes": peak_rss_bytes()})


def status_bytes(field: str) -> int | None:
    """A size field of /proc/self/status (VmRSS, VmHWM, ...) in bytes; None where unreadable."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's own high-water mark. VmHWM belongs to the address space, which exec
    replaces; ru_maxrss instead survives fork + exec on Linux and would report the parent's
    peak (the coordinator's, after it exported a 2 GB model)."""
    peak = status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
