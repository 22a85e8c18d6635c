"""`w2vbert benchmark`: the harness's command, added to the `w2vbert` group through the
`w2vbert.commands` entry point (setup.cfg), so the exporter's CLI never imports benchmarks."""

from __future__ import annotations

import sys

import click

from exporter.cli.common import verbosity


def _numbers(kind):
    """A click callback: "1,5,10" -> (1, 5, 10) of positive `kind`, or a usage error (exit 2)."""
    def parse(ctx, param, value: str):
        try:
            items = tuple(kind(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of {kind.__name__}s") from None
        if not items or any(v <= 0 for v in items):
            raise click.BadParameter(f"{value!r}: give positive {kind.__name__}s, e.g. "
                                     f"{'1,5,10' if kind is float else '1,4'}")
        return items
    return parse


@click.command()
@click.argument("source", required=False)
@click.option("--preset", help="Benchmark a preset (e.g. w2v-bert-2.0, the 600M full-size study).")
@click.option("-o", "--out", "out_dir", default="benchmark-results", show_default=True, type=click.Path(),
              help="Where results.json, results.md and the PNG plots go.")
@click.option("--durations", default="1,5,10,30", show_default=True, callback=_numbers(float),
              help="Audio seconds, comma-separated.")
@click.option("--batches", default="1,4", show_default=True, callback=_numbers(int),
              help="Batch sizes, comma-separated.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads per backend (default: all cores).")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1),
              help="Interleaved timed runs per case and backend.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0),
              help="Untimed runs per case and backend.")
@click.option("--quick", is_flag=True, help="1 and 5 s, batch 1, 3 repeats: a few minutes at most.")
@click.option("--work-dir", type=click.Path(),
              help="Keep exports here to reuse them across runs of the same source; a folder holding another "
                   "source's files (or unknown ones) is refused, never cleared.")
@click.option("--precision", default="fp32", show_default=True,
              help="Variants to export and time (as for export), e.g. fp32,int8,int8-qdq,int4.")
@click.option("--gate", "gate_overrides", multiple=True, metavar="[PRECISION.]KEY=VALUE",
              help="Gate threshold overrides for that export (random-weight presets need them).")
@click.option("--spin", is_flag=True,
              help="Let OpenMP and onnxruntime threads spin-wait as they do by default (what users get); "
                   "without it idle threads sleep at once, so no idle worker competes with the timed one.")
@click.option("--only", default="", help="Run only the backends whose name contains one of these "
              "comma-separated words (case-insensitive), e.g. 'transformers,ours,OpenVINO'.")
@verbosity
def benchmark(source, preset, out_dir, durations, batches, threads, repeats, warmup, quick, work_dir, precision,
              gate_overrides, spin, only):
    """Side-by-side speed and memory of SOURCE (checkpoint, preset or artifact; default: bundled model).

    Backends: transformers eager, our PyTorch reference, the plain torch.onnx.export of the
    transformers model in onnxruntime (and its quantize_dynamic version when an int precision is
    asked for), every variant of the artifact, OpenVINO (on the plain export and on our standard-op
    fp32 / int8-qdq graphs) and CTranslate2 (float32, int8); each in its own process, runs
    interleaved, each output compared with transformers'.
    """
    import os
    from pathlib import Path

    from exporter.quantize.gates import parse_overrides
    from exporter.steps.precisions import QuantOptions

    from .harness import Grid
    from .report import print_table
    from .run import QUICK, grid_size
    from .run import benchmark as run_benchmark

    if quick:
        grid = Grid(QUICK.durations, QUICK.batches, threads or os.cpu_count() or 1, QUICK.warmup, QUICK.repeats,
                    spin)
    else:
        grid = Grid(durations, batches, threads or os.cpu_count() or 1, warmup, repeats, spin)
    command = "w2vbert " + " ".join(sys.argv[1:])
    with click.progressbar(length=grid_size(grid), label="benchmark", file=sys.stderr) as bar:
        data = run_benchmark(preset or source, Path(out_dir), grid, Path(work_dir) if work_dir else None,
                             progress=bar.update, command=command,
                             precisions=tuple(p.strip() for p in precision.split(",") if p.strip()),
                             quant=QuantOptions(gates=parse_overrides(gate_overrides)),
                             only=tuple(o.strip() for o in only.split(",") if o.strip()))
    print_table(data)
    click.echo(f"wrote {out_dir}/results.json, results.md and {len(data['plots'])} plot(s)")
