"""`w2vbert benchmark`: prepare backends, measure peaks, run the grid, write the reports."""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from exporter.machine import machine
from runtime.manifest import MANIFEST_NAME, load_manifest

from . import report
from .backends import file_size, materialize, plan_backends
from .harness import Grid, run_grid
from .peaks import measure_peaks
from .peers import PEER_DISTRIBUTIONS, STANDARD_GRAPHS, plan_peers, prepare_ctranslate2
from .workdir import claim

log = logging.getLogger("w2vbert")
SCHEMA = "w2vbert-deploy/benchmark"
QUICK = Grid(durations=(1.0, 5.0), batches=(1,), warmup=1, repeats=3)


def prepare(source: str | None, work: Path, precisions=("fp32",), quant=None) -> tuple[Path, str | None]:
    """-> (artifact dir, checkpoint dir for the PyTorch backends or None)."""
    if source is not None and (Path(source) / MANIFEST_NAME).is_file():
        manifest = load_manifest(source)
        origin = manifest.data.get("source")
        checkpoint = origin if origin and Path(origin).is_dir() else None
        if checkpoint is None:
            log.info("artifact's source %r is not a checkpoint dir here: PyTorch backends are skipped", origin)
        return Path(source), checkpoint
    from exporter.export import export

    checkpoint = materialize(source, work / "checkpoint")
    artifact = work / "artifact"
    have = set(load_manifest(artifact).data["variants"]) if (artifact / MANIFEST_NAME).is_file() else set()
    if not set(precisions) <= have:
        log.info("exporting %s (%s) for the benchmark", checkpoint, ", ".join(precisions))
        export(checkpoint, artifact, precisions=precisions, force=True, quant=quant)
    return artifact, checkpoint


def prepare_plain_export(spec: dict, threads: int) -> str | None:
    """Run the plain torch.onnx.export in a one-off process (its memory is not the runtime's)."""
    import json

    if Path(spec["path"]).is_file():
        return None
    log.info("%s (what users do today)", "quantize_dynamic of the plain export" if spec.get("quantize_from")
             else "plain export of the transformers model (torch.onnx.export)")
    done = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(spec), str(threads), "--prepare"],
                          capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[1]))
    if done.returncode != 0 or not Path(spec["path"]).is_file():
        return f"building it failed: {done.stderr.strip().splitlines()[-1:]}"
    return None


def prepare_standard_graphs(checkpoint: str, work: Path, wanted: list[str], quant) -> str | None:
    """Our standard-op graphs of the `wanted` precisions (--target tensorrt: fp32, int8-qdq) for
    OpenVINO, under work/STANDARD_GRAPHS; None, or why they could not be built."""
    folder = work / STANDARD_GRAPHS
    have = set(load_manifest(folder).data["variants"]) if (folder / MANIFEST_NAME).is_file() else set()
    if not set(wanted) <= have:
        log.info("exporting the standard-op graphs (%s, --target tensorrt) for OpenVINO", ", ".join(wanted))
        # In a process of its own: a 600M export peaks at ~7 GB, which this coordinator would keep
        # while the workers load (the machine ran out of memory that way).
        gates = gate_args(quant.gates if quant else {})
        done = subprocess.run([sys.executable, "-m", "exporter.cli", "-q", "export", checkpoint, "-o", str(folder),
                               "--target", "tensorrt", "--precision", ",".join(wanted), "--force", *gates],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return f"the standard-op export failed: {(done.stderr.strip().splitlines() or [done.returncode])[-1]}"
    return None


def gate_args(gates: dict) -> list[str]:
    """exporter.quantize.gates.parse_overrides' result back to `--gate [PRECISION.]KEY=VALUE` arguments."""
    return [arg for scope, table in gates.items() for name, value in table.items()
            for arg in ("--gate", f"{'' if scope == '*' else scope + '.'}{name}={value!r}")]


def benchmark(source: str | None, out_dir: Path, grid: Grid, work_dir: Path | None = None,
              progress=None, command: str = "w2vbert benchmark", precisions=("fp32",), quant=None,
              only: tuple[str, ...] = ()) -> dict:
    options = (progress, command, precisions, quant, only)
    if work_dir is not None:  # kept: exports are reused across runs of the same source
        claim(Path(work_dir), source)  # before anything is written anywhere
        out_dir.mkdir(parents=True, exist_ok=True)
        return _benchmark(source, out_dir, grid, Path(work_dir), *options)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="w2vbert-bench-") as work:  # nothing left in the temp folder
        return _benchmark(source, out_dir, grid, Path(work), *options)


def select(specs: list[dict], only: tuple[str, ...]) -> tuple[list[dict], list[tuple[str, str]]]:
    """Keep the backends whose name contains one of `only` (case-insensitive); all when empty."""
    if not only:
        return specs, []
    keep = [s for s in specs if any(o.lower() in s["name"].lower() for o in only)]
    return keep, [(s["name"], f"not selected (--only {','.join(only)})") for s in specs if s not in keep]


def _plan(source, work: Path, precisions, quant, only):
    """-> (artifact, checkpoint, backend specs to run, [(name, reason)] skipped): what runs, decided."""
    artifact, checkpoint = prepare(source, work, precisions, quant)
    int8 = any(p.startswith("int") for p in precisions)
    specs, skipped = plan_backends(checkpoint, artifact, work)
    if checkpoint is None:
        skipped += [(s["name"], "no checkpoint to build it from") for s in specs if s["kind"] != "session"]
        specs = [s for s in specs if s["kind"] == "session"]
    peers, peer_skips = plan_peers(checkpoint, work, int8)
    specs, unselected = select(specs + peers, only)
    return artifact, checkpoint, specs, skipped + peer_skips + unselected


def _prepare_files(specs: list[dict], checkpoint, work: Path, threads: int, quant) -> tuple[list, list]:
    """Build the files the selected backends read (our standard-op graphs, the plain export and its
    quantize_dynamic, CTranslate2's conversion); -> (backends that can run, [(name, reason)] that cannot)."""
    skipped = []
    # OpenVINO's rows on our graphs need a --target tensorrt export: made only when one of them runs
    std_users = [s for s in specs if Path(s.get("path", "")).parent == work / STANDARD_GRAPHS]
    wanted = sorted({s["precision"] for s in std_users})  # the rows' precisions (benchmarks.peers)
    reason = prepare_standard_graphs(checkpoint, work, wanted, quant) if std_users else None
    if reason:
        skipped += [(s["name"], reason) for s in std_users]
        specs = [s for s in specs if s not in std_users]
    plain = {"kind": "plain-export", "name": "plain export", "source": checkpoint,
             "path": str(work / "plain" / "model.onnx")}
    for spec in [plain] + [s for s in specs if s["kind"] == "plain-export"]:  # the fp32 export first
        users = [s for s in specs if spec["path"] in (s.get("path"), s.get("quantize_from"))]
        reason = prepare_plain_export(spec, threads) if users else None
        if reason:
            skipped += [(s["name"], reason) for s in users]
            specs = [s for s in specs if s not in users]
    for spec in [s for s in specs if s["kind"] == "ctranslate2"]:
        reason = prepare_ctranslate2(spec)
        if reason:
            skipped.append((spec["name"], reason))
            specs.remove(spec)
    return specs, skipped


def _benchmark(source, out_dir: Path, grid: Grid, work: Path, progress, command: str, precisions, quant,
               only) -> dict:
    from exporter.artifact import tool_versions

    artifact, checkpoint, specs, skipped = _plan(source, work, precisions, quant, only)
    specs, unbuilt = _prepare_files(specs, checkpoint, work, grid.threads, quant)
    skipped = skipped + unbuilt
    manifest = load_manifest(artifact)
    log.info("measuring this machine's fp32 and int8 matmul peaks")
    peaks = measure_peaks(grid.threads)
    data = run_grid(specs, grid, manifest.config, manifest.head, peaks, progress, parity_dir=work / "parity")
    log.info("measuring the peaks again: on a shared host they move between minutes, and the report says how far")
    peaks_after = measure_peaks(grid.threads)
    for fact in data["backends"].values():
        fact["file_bytes"] = file_size(fact["spec"])
    config = manifest.config
    data.update({
        "schema": SCHEMA, "schema_version": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine(), "python": platform.python_version()},
        "versions": tool_versions(PEER_DISTRIBUTIONS), "peaks": peaks, "peaks_after": peaks_after,
        "grid": {"durations": list(grid.durations), "batches": list(grid.batches), "threads": grid.threads,
                 "warmup": grid.warmup, "repeats": grid.repeats, "spin": grid.spin},
        "model": {"head": manifest.head, "source": manifest.data.get("source"),
                  "label": f"{manifest.head}, {config['num_hidden_layers']} layers x {config['hidden_size']} "
                           f"({config['position_embeddings_type']})"},
        "skipped": data["skipped"] + skipped,
    })
    report.write_json(data, out_dir / "results.json")
    report.write_markdown(data, out_dir / "results.md", command)
    data["plots"] = [str(p) for p in report.plot(data, out_dir)]
    return data


def grid_size(grid: Grid) -> int:
    return len(grid.cases()) * grid.repeats

