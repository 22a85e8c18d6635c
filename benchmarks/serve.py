"""Serving throughput and latency: Triton (dynamic batching on / off) against in-process Session calls.

    python -m benchmarks.serve [ARTIFACT] [--concurrency 1,2,4,8] [--requests 48] [--min-seconds 0.6]
                               [--max-seconds 6] [--out benchmarks/results/serve.md]

The same mixed-length utterances (cut from the bundled speech, seeded) go to each backend from 1, 2,
4 and 8 client threads (each with its own client, as tritonclient requires). Backends: the audio
model of `w2vbert serve` (exporter.targets.triton_python) on nvidia-pytriton's tritonserver over
HTTP, once with dynamic batching (max batch 8, 5 ms queue delay) and once without, and the same
requests as direct `Session.infer` calls from the same threads, one Session shared. Throughput is
audio seconds per wall second; latency per request. Clients, server and Session share this
machine's cores, as they would on one host.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def mixed_waves(count: int, low: float, high: float, seed: int = 0) -> list[np.ndarray]:
    from exporter.model.sources import BUNDLED
    from runtime.audio import load_audio

    speech = np.concatenate([load_audio(p) for p in sorted((BUNDLED / "samples").glob("*.wav"))])
    speech = np.tile(speech, int(np.ceil(high * 16000 * 2 / len(speech))) + 1)
    rng = np.random.default_rng(seed)
    lengths = (rng.uniform(low, high, count) * 16000).astype(int)
    starts = rng.integers(0, len(speech) - lengths.max(), count)
    return [speech[s:s + n].copy() for s, n in zip(starts, lengths)]


def drive(call_factory, waves: list, concurrency: int) -> dict:
    """Send every wave once from `concurrency` threads; each thread makes its caller with call_factory()."""
    latencies, errors = [], []

    def work(k: int):
        call, close = call_factory()
        try:
            for i in range(k, len(waves), concurrency):
                start = time.perf_counter()
                call(waves[i])
                latencies.append(time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(exc)
        finally:
            close()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    ms = np.array(latencies) * 1e3
    return {"throughput": sum(len(w) for w in waves) / 16000 / wall, "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99)), "requests": len(ms)}


def triton_caller(port: int, model: str):
    import tritonclient.http as http

    def factory():
        client = http.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=300)

        def call(wave):
            audio = http.InferInput("audio", [1, len(wave)], "FP32")
            audio.set_data_from_numpy(wave[None])
            client.infer(model, [audio])
        return call, client.close
    return factory


def measure_triton(artifact: Path, waves, levels, batching: bool) -> dict:
    from exporter.targets.triton_python import ServeOptions, serving_repository
    from exporter.targets.triton_server import Ports, TritonServer, free_ports

    with tempfile.TemporaryDirectory(prefix="w2vbert-serve-bench-") as work:
        work = Path(work)
        options = ServeOptions(max_batch=8, queue_delay_ms=5.0 if batching else 0.0)
        _, audio = serving_repository(artifact, work / "repository", None, options)
        with TritonServer(work / "repository", work, Ports(*free_ports(3))) as server:
            drive(triton_caller(server.ports.http, audio), waves[:4], 1)  # warm-up
            return {c: drive(triton_caller(server.ports.http, audio), waves, c) for c in levels}


def measure_session(artifact: Path, waves, levels) -> dict:
    from runtime import Session

    session = Session(artifact)
    pipe = session.audio_runner()

    def factory():
        return (lambda wave: pipe([wave])), (lambda: None)
    drive(factory, waves[:4], 1)
    return {c: drive(factory, waves, c) for c in levels}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", type=Path, nargs="?",
                        help="artifact to serve [a fresh export of the bundled model]")
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--min-seconds", type=float, default=0.6)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve.md"))
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    waves = mixed_waves(args.requests, args.min_seconds, args.max_seconds)
    with tempfile.TemporaryDirectory(prefix="w2vbert-serve-art-") as tmp:
        artifact = args.artifact
        if artifact is None:
            from exporter.export import export

            artifact = export(None, Path(tmp) / "digits")
        results = {"Triton, dynamic batching": measure_triton(artifact, waves, levels, batching=True),
                   "Triton, no batching": measure_triton(artifact, waves, levels, batching=False),
                   "in-process Session": measure_session(artifact, waves, levels)}
    write_report(args, results, levels, sum(len(w) for w in waves) / 16000)


def write_report(args, results: dict, levels, audio_seconds: float) -> None:
    from .study import write_study

    lines = ["# Serving: Triton Inference Server vs in-process Session", "",
             f"Command: `python -m benchmarks.serve{' ARTIFACT' if args.artifact else ''} --concurrency "
             f"{args.concurrency} --requests {args.requests} --min-seconds {args.min_seconds:g} --max-seconds "
             f"{args.max_seconds:g}`", "",
             f"{args.requests} requests of {args.min_seconds:g}-{args.max_seconds:g} s ({audio_seconds:.0f} s of audio "
             f"in all), {'the given artifact' if args.artifact else 'the bundled model'}, the audio model over HTTP "
             "(1 instance, max batch 8), clients on the same machine.", "",
             "| backend | clients | audio s / s | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|"]
    for name, by_level in results.items():
        for c in levels:
            r = by_level[c]
            lines.append(f"| {name} | {c} | {r['throughput']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} |")
    write_study(args.out, lines)
    args.out.with_suffix(".json").write_text(json.dumps({"results": {k: {str(c): v for c, v in r.items()}
                                                                     for k, r in results.items()}}, indent=2))
    _plot(results, levels, args.out.with_suffix(".png"))


def _plot(results: dict, levels, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, by_level in results.items():
        left.plot(levels, [by_level[c]["throughput"] for c in levels], marker="o", label=name)
        right.plot(levels, [by_level[c]["p99"] for c in levels], marker="o", label=name)
    left.set(xlabel="concurrent clients", ylabel="audio seconds per second", title="throughput")
    right.set(xlabel="concurrent clients", ylabel="ms", title="p99 latency")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
