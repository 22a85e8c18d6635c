"""Benchmark coordinator: one worker process per backend, runs interleaved across backends.

For every grid case (duration x batch), each backend first gets `warmup` runs,
then `repeats` rounds in which every backend runs once, in an order rotated
each round (A B C, B C A, ...), so machine drift and cache effects hit all
backends alike. Workers stay alive between cases, so model load happens once
and is timed separately.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .flops import frames_for_seconds, model_flops

log = logging.getLogger("w2vbert")

SPIN_PAUSE = 0.2  # seconds; OpenMP's and onnxruntime's default spin-waits last milliseconds
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


@dataclass
class Grid:
    durations: tuple[float, ...] = (1.0, 5.0, 10.0, 30.0)
    batches: tuple[int, ...] = (1, 4)
    threads: int = os.cpu_count() or 1
    warmup: int = 1
    repeats: int = 5
    # False: OpenMP and onnxruntime threads sleep as soon as they are idle, so no idle worker
    # competes with the timed one. True: each library's default waiting (spin-wait, what users
    # get; it made PyTorch eager 3-13% faster here, onnxruntime <1%), with SPIN_PAUSE between runs.
    spin: bool = False

    def cases(self) -> list[tuple[float, int]]:
        return [(d, b) for b in self.batches for d in self.durations]


def interleaved_order(backends: list, repeats: int) -> list[list]:
    """Round r runs every backend once, starting at backend r mod n (rotation)."""
    n = len(backends)
    return [[backends[(r + k) % n] for k in range(n)] for r in range(repeats)]


def stats(seconds: list[float]) -> dict:
    values = np.array(seconds)
    return {"min": float(values.min()), "median": float(np.median(values)),
            "p90": float(np.percentile(values, 90)), "runs": len(values)}


def worker_env(threads: int, spin: bool) -> dict[str, str]:
    """The environment of a worker process: its thread count and thread waiting policy."""
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES}  # spin: the libraries' defaults
    env["OMP_NUM_THREADS"] = str(threads)
    if not spin:
        env.update({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"})
    return env


class Worker:
    def __init__(self, spec: dict, threads: int, spin: bool = False):
        self.spec = {**spec, "spin": spin}
        # Idle workers must not steal cores from the one being timed: OpenMP (torch) and
        # onnxruntime thread pools spin-wait after each call by default.
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", json.dumps(self.spec),
                                         str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=worker_env(threads, spin),
                                        cwd=str(Path(__file__).resolve().parents[1]))
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            return {"ready": False, "error": f"worker exited with code {self.process.wait()}"}
        return json.loads(line)

    def run(self, batch: int, frames: int, feature_dim: int, seed: int) -> float:
        self.process.stdin.write(json.dumps({"batch": batch, "frames": frames, "feature_dim": feature_dim,
                                             "seed": seed}) + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if "seconds" not in answer:
            raise RuntimeError(f"{self.spec['name']} failed: {answer}")
        return answer["seconds"]

    def close(self) -> int | None:
        try:
            self.process.stdin.write(json.dumps({"quit": True}) + "\n")
            self.process.stdin.flush()
            rss = self._read().get("peak_rss_bytes")
        except (BrokenPipeError, ValueError):
            rss = None
        self.process.wait(timeout=60)
        return rss


@dataclass
class Result:
    backend: str
    duration: float
    batch: int
    frames: int
    latency: dict
    flops: int
    audio_seconds_per_second: float = 0.0
    real_time_factor: float = 0.0
    gflops: float = 0.0
    percent_of_peak: float = 0.0
    extra: dict = field(default_factory=dict)


def run_grid(specs: list[dict], grid: Grid, config: dict, head: str, peaks: dict, progress=None) -> dict:
    """Start workers, run every case interleaved, collect results and per-backend facts."""
    workers, skipped = [], []
    for spec in specs:
        log.info("starting %s", spec["name"])
        worker = Worker(spec, grid.threads, grid.spin)
        if worker.ready.get("ready"):
            workers.append(worker)
        else:
            skipped.append((spec["name"], worker.ready.get("error", "failed to load")))
    results = []
    feature_dim = config["feature_projection_input_dim"]
    try:
        for case, (duration, batch) in enumerate(grid.cases()):
            frames = frames_for_seconds(duration)
            times = {w.spec["name"]: [] for w in workers}
            for w in workers:
                for _ in range(grid.warmup):
                    w.run(batch, frames, feature_dim, seed=case)
            for round_ in interleaved_order(workers, grid.repeats):
                for w in round_:
                    if grid.spin:
                        time.sleep(SPIN_PAUSE)  # the previous worker's spinning threads park first
                    times[w.spec["name"]].append(w.run(batch, frames, feature_dim, seed=case))
                if progress:
                    progress(1)
            flops = model_flops(config, head, frames, batch)
            for w in workers:
                results.append(_result(w, duration, batch, frames, times[w.spec["name"]], flops, peaks))
    finally:
        facts = {w.spec["name"]: {"load_seconds": w.ready["load_seconds"], "peak_rss_bytes": w.close(),
                                  "spec": w.spec} for w in workers}
    return {"results": [asdict(r) for r in results], "backends": facts, "skipped": skipped}


def _result(worker, duration, batch, frames, seconds, flops, peaks) -> Result:
    latency = stats(seconds)
    median = latency["median"]
    precision = worker.spec.get("precision", "fp32")
    peak = peaks.get("int8" if precision.startswith("int") else "fp32", 0.0)
    gflops = flops / median / 1e9
    return Result(backend=worker.spec["name"], duration=duration, batch=batch, frames=frames, latency=latency,
                  flops=flops, audio_seconds_per_second=duration * batch / median,
                  real_time_factor=median / (duration * batch), gflops=gflops,
                  percent_of_peak=100.0 * gflops / peak if peak else 0.0)
