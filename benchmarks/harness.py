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


def time_interleaved(jobs: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each job(), `repeats` rounds in interleaved_order: in-process studies time alike."""
    times = {name: [] for name in jobs}
    for round_ in interleaved_order(list(jobs), repeats):
        for name in round_:
            start = time.perf_counter()
            jobs[name]()
            times[name].append(time.perf_counter() - start)
    return times


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


class WorkerFailed(RuntimeError):
    """A backend's call failed (its worker answered the error); the run goes on without it."""


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
        facts = self.ready.get("facts") or {}
        if facts.get("label"):  # the name says what the backend runs, as it reported after loading
            self.spec["name"] = facts["label"]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            return {"ready": False, "error": f"worker exited with code {self.process.wait()}"}
        return json.loads(line)

    def run(self, batch: int, frames: int, feature_dim: int, seed: int, save: str | None = None) -> float:
        command = {"batch": batch, "frames": frames, "feature_dim": feature_dim, "seed": seed}
        self.process.stdin.write(json.dumps({**command, "save": save} if save else command) + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if "seconds" not in answer:
            raise WorkerFailed(answer.get("error", str(answer)))
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


def run_grid(specs: list[dict], grid: Grid, config: dict, head: str, peaks: dict, progress=None,
             parity_dir: Path | None = None) -> dict:
    """Start workers, run every case interleaved, collect results and per-backend facts."""
    workers, skipped = [], []
    for spec in specs:
        log.info("starting %s", spec["name"])
        worker = Worker(spec, grid.threads, grid.spin)
        if worker.ready.get("ready"):
            workers.append(worker)
        else:
            skipped.append((spec["name"], worker.ready.get("error", "failed to load")))
    results, closed = [], {}
    feature_dim = config["feature_projection_input_dim"]

    def drop(worker, error, where):
        skipped.append((worker.spec["name"], f"failed at {where}: {error}"))
        workers.remove(worker)
        closed[worker.spec["name"]] = _facts(worker)

    parity: dict = {}
    try:
        parity = _parity(workers, grid, feature_dim, parity_dir, drop) if parity_dir else {}
        for case, (duration, batch) in enumerate(grid.cases()):
            frames = frames_for_seconds(duration)
            times = {w.spec["name"]: [] for w in workers}
            for w in list(workers):
                for _ in range(grid.warmup):
                    if not _timed(w, times, (batch, frames, feature_dim, case), drop, grid.spin, record=False):
                        break
            for round_ in interleaved_order(list(workers), grid.repeats):
                for w in round_:
                    if w in workers:  # a backend that failed earlier in this case is out
                        _timed(w, times, (batch, frames, feature_dim, case), drop, grid.spin)
                if progress:
                    progress(1)
            flops = model_flops(config, head, frames, batch)
            for w in workers:
                results.append(_result(w, duration, batch, frames, times[w.spec["name"]], flops, peaks))
    finally:
        facts = {**closed, **{w.spec["name"]: _facts(w) for w in workers}}
    for name, fact in facts.items():
        fact["parity"] = parity.get(name) if parity_dir else None
    return {"results": [asdict(r) for r in results], "backends": facts, "skipped": skipped}


def _timed(worker, times: dict, case: tuple, drop, spin: bool, record: bool = True) -> bool:
    """One run of `worker` on (batch, frames, feature_dim, seed); False (and dropped) when it failed."""
    batch, frames, feature_dim, seed = case
    if spin:
        time.sleep(SPIN_PAUSE)  # the previous worker's spinning threads park first
    try:
        seconds = worker.run(batch, frames, feature_dim, seed=seed)
    except WorkerFailed as exc:
        drop(worker, exc, f"{frames} frames x{batch}")
        return False
    if record:
        times[worker.spec["name"]].append(seconds)
    return True


def _facts(worker) -> dict:
    return {"load_seconds": worker.ready["load_seconds"], "peak_rss_bytes": worker.close(), "spec": worker.spec,
            **{k: v for k, v in (worker.ready.get("facts") or {}).items() if k != "label"}}


PARITY_BASELINES = ("transformers eager", "reference eager")


def _parity(workers, grid: Grid, feature_dim: int, folder: Path, drop) -> dict:
    """Each backend's first output on one input (batch 1, the grid's first duration) against
    transformers' (or our reference's): max abs error, and scaled by the reference's largest magnitude."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = frames_for_seconds(grid.durations[0])
    saved = {}
    for i, w in enumerate(list(workers)):
        path = folder / f"{i}.npy"
        try:
            w.run(1, frames, feature_dim, seed=10_000, save=str(path))
            saved[w.spec["name"]] = np.load(path)
        except WorkerFailed as exc:
            drop(w, exc, f"the parity run ({grid.durations[0]:g} s x1)")
    against = next((name for name in PARITY_BASELINES if name in saved), None)
    if against is None:
        return {}
    ref = saved[against].astype(np.float64)
    out = {}
    for name, value in saved.items():
        if value.shape != ref.shape:
            out[name] = {"against": against, "error": f"output shape {list(value.shape)} vs {list(ref.shape)}"}
            continue
        err = float(np.abs(value.astype(np.float64) - ref).max())
        out[name] = {"against": against, "max_abs": err, "scaled": err / max(float(np.abs(ref).max()), 1e-12)}
    return out


def _result(worker, duration, batch, frames, seconds, flops, peaks) -> Result:
    latency = stats(seconds)
    median = latency["median"]
    precision = worker.spec.get("precision", "fp32")
    roof = "int8" if precision.startswith("int") else ("bf16" if precision == "bf16" and "bf16" in peaks else "fp32")
    peak = peaks.get(roof, 0.0)
    gflops = flops / median / 1e9
    return Result(backend=worker.spec["name"], duration=duration, batch=batch, frames=frames, latency=latency,
                  flops=flops, audio_seconds_per_second=duration * batch / median,
                  real_time_factor=median / (duration * batch), gflops=gflops,
                  percent_of_peak=100.0 * gflops / peak if peak else 0.0)
