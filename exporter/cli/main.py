"""`w2vbert` command line: a thin shell over exporter/ and runtime/ functions.

torch is imported only by the commands that need it, so `w2vbert inspect`
works with the runtime alone. User errors print one line and exit with the
error type's code; `--debug` shows the traceback.
"""

from __future__ import annotations

import logging
import sys

import click

from runtime.errors import W2VBertError

from ..plan import CALIBRATORS, DEFAULT_OPSET, HEAD_NAMES, TARGETS
from .transcribe import transcribe

log = logging.getLogger("w2vbert")


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except W2VBertError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Only print errors and results.")
@click.pass_context
def main(ctx, debug, quiet):
    """Export Wav2Vec2-BERT checkpoints to verified ONNX artifacts and run them."""
    ctx.obj = {"debug": debug, "quiet": quiet}
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[w2vbert] %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    log.propagate = False


@main.command()
@click.argument("source", required=False)
@click.option("-o", "--out", required=True, type=click.Path(), help="Artifact directory to write.")
@click.option("--head", type=click.Choice(HEAD_NAMES), help="Override the head named by config.json `architectures`.")
@click.option("--opset", default=DEFAULT_OPSET, show_default=True, type=int, help="ONNX opset (>= 17).")
@click.option("--precision", default="fp32", show_default=True,
              help="Comma-separated: fp32, fp16, int8 (dynamic, ort), int8-qdq (calibrated), int4 (ort). "
                   "fp32 is always built; the others are gated against it.")
@click.option("--calibration", type=click.Path(exists=True),
              help="int8-qdq: audio files / .npy features (file or dir) to calibrate on [bundled samples].")
@click.option("--calibrator", type=click.Choice(CALIBRATORS), default="percentile",
              show_default=True, help="int8-qdq activation range method.")
@click.option("--gate-data", type=click.Path(exists=True),
              help="Held-out audio / .npy for the accuracy gates [bundled samples].")
@click.option("--gate", "gate_overrides", multiple=True, metavar="[PRECISION.]KEY=VALUE",
              help="Override a gate threshold, e.g. int8.max_cer=1.0 (repeatable).")
@click.option("--keep-fp32", default="none", show_default=True,
              help="none | auto (keep the most sensitive layers in fp32 until the gate passes) | "
                   "comma-separated substrings of MatMul node names.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--target", type=click.Choice(TARGETS), default="ort", show_default=True,
              help="ort: com.microsoft MultiHeadAttention; tensorrt: standard ONNX ops only.")
@click.option("--with-frontend", is_flag=True,
              help="Also write model.fp32.frontend.onnx: raw 16 kHz samples in, head outputs out.")
@click.option("--engine", is_flag=True,
              help="--target tensorrt: also build TensorRT plans (fp32, fp16, int8 from int8-qdq); needs a GPU.")
@click.option("--min-seconds", default=1.0, show_default=True, help="Engine profile: shortest audio.")
@click.option("--opt-seconds", default=10.0, show_default=True, help="Engine profile: audio length tuned for.")
@click.option("--max-seconds", default=30.0, show_default=True, help="Engine profile: longest audio.")
@click.option("--opt-batch", default=1, show_default=True, help="Engine profile: batch tuned for.")
@click.option("--max-batch", default=8, show_default=True, help="Largest batch: engine profile, Triton max_batch_size.")
@click.option("--engine-cache", type=click.Path(), help="Engine + timing cache dir [~/.cache/w2vbert-deploy/tensorrt].")
@click.option("--triton-repo", type=click.Path(), help="Also write a Triton model repository here.")
@click.option("--triton-name", help="Triton model name prefix [w2vbert_<head>].")
@click.option("--triton-gpu", is_flag=True, help="Triton instances on GPU (ORT TensorRT accelerator) instead of CPU.")
def export(source, out, head, opset, precision, calibration, calibrator, gate_data, gate_overrides, keep_fp32,
           force, target, with_frontend, engine, min_seconds, opt_seconds, max_seconds, opt_batch, max_batch,
           engine_cache, triton_repo, triton_name, triton_gpu):
    """Export SOURCE (checkpoint dir or preset; default: the bundled model) to OUT.

    SOURCE is a Hugging Face checkpoint directory (config.json + model.safetensors)
    or a preset: `tiny`, `w2v-bert-2.0` (random weights, the 600M architecture).
    """
    from ..export import export as run_export
    from ..quantize.gates import parse_overrides
    from ..steps.precisions import QuantOptions

    precisions = tuple(p.strip() for p in precision.split(",") if p.strip())
    quant = QuantOptions(calibration=calibration, calibrator=calibrator, gate_data=gate_data,
                         gates=parse_overrides(gate_overrides), keep_fp32=keep_fp32)
    profile = dict(min_seconds=min_seconds, opt_seconds=opt_seconds, max_seconds=max_seconds,
                   opt_batch=opt_batch, max_batch=max_batch) if engine else None
    path = run_export(source, out, head=head, opset=opset, precisions=precisions, force=force,
                      with_frontend=with_frontend, target=target, quant=quant, engine=profile,
                      engine_cache=engine_cache)
    _print_summary(path)
    if triton_repo:
        from ..targets.triton import write_repository

        for folder in write_repository(path, triton_repo, name=triton_name, gpu=triton_gpu, max_batch=max_batch):
            click.echo(f"triton     {folder}")


@main.command()
@click.argument("artifact", type=click.Path())
@click.option("--source", help="Checkpoint dir or preset to compare with (default: the one in the manifest).")
@click.option("--precision", help="One variant to check [every variant; --backend tensorrt: fp32].")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime",
              show_default=True, help="tensorrt: check the model.<precision>.plan engine (needs a GPU).")
@click.option("--gate-data", type=click.Path(exists=True),
              help="Reduced precisions: held-out audio / .npy to judge on [the data recorded at export].")
@click.option("--gate", "gate_overrides", multiple=True, metavar="[PRECISION.]KEY=VALUE",
              help="Reduced precisions: tighten or relax a recorded gate threshold (repeatable).")
def verify(artifact, source, precision, backend, gate_data, gate_overrides):
    """Re-check ARTIFACT: sha256 of every file, fp32 parity against the PyTorch reference, and each
    reduced precision's accuracy gate on the data and thresholds its export recorded (needs the
    export extra)."""
    from runtime.manifest import load_manifest

    from ..quantize.gates import GateRow, parse_overrides
    from ..verify import verify_artifact

    overrides = parse_overrides(gate_overrides)
    if precision is not None or backend == "tensorrt":
        precisions = [precision or "fp32"]
    else:
        precisions = list(load_manifest(artifact).data["variants"])
    for i, name in enumerate(precisions):
        rows = verify_artifact(artifact, source=source, precision=name, backend=backend, gate_data=gate_data,
                               gates=overrides, check_files=i == 0)
        for row in rows:
            click.echo(row.row())
        what = "gate" if rows and isinstance(rows[0], GateRow) else "parity"
        click.echo(f"{artifact}: {name} {what} ok ({backend})")


@main.command()
@click.argument("artifact", type=click.Path())
def inspect(artifact):
    """Print the manifest summary of ARTIFACT (runtime only, no torch)."""
    _print_summary(artifact)


def _print_summary(path) -> None:
    from runtime.manifest import CPU_FORM, load_manifest

    manifest = load_manifest(path)
    data, config = manifest.data, manifest.config
    click.echo(f"artifact   {manifest.root}")
    click.echo(f"head       {data['head']}   source {data.get('source')}   opset {data.get('opset')}")
    click.echo(f"model      {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
               f"{config['num_attention_heads']} heads, position {config['position_embeddings_type']}, "
               f"adapter {'yes' if config['add_adapter'] else 'no'}")
    for spec in data["inputs"]:
        click.echo(f"input      {spec['name']:<18} {spec['dtype']:<8} {spec['shape']}")
    for spec in data["outputs"]:
        click.echo(f"output     {spec['name']:<18} {spec['dtype']:<8} {spec['shape']}")
    click.echo(f"lengths    {data.get('output_length_formula')}; min frames {data.get('min_frames')}")
    for precision, variant in data["variants"].items():
        size = sum(data["files"][f]["bytes"] for f in variant["files"]) / 1e6
        if "gate" in variant:
            metrics = variant["gate"]["metrics"]
            check = "gate " + ", ".join(f"{k} {metrics[k]:.4g}" for k in ("cosine", "agreement", "cer")
                                        if k in metrics)
            if variant.get("kept_fp32"):
                check += f", {len(variant['kept_fp32'])} MatMuls kept fp32"
        else:
            check = "max abs err: " + ", ".join(f"{k} {v['max_abs']:.1e}" for k, v in variant.get("parity", {}).items())
        click.echo(f"variant    {precision:<8} {variant['file']:<22} {size:9.1f} MB  target {variant['target']}"
                   f"  {check}")
        if CPU_FORM in variant:
            form = variant[CPU_FORM]
            extra = sum(data["files"][f]["bytes"] for f in form["files"] if f not in variant["files"]) / 1e6
            click.echo(f"  cpu form {form['file']:<31} +{extra:8.1f} MB  Add + LayerNormalization for the CPU provider")
    for precision, entry in data.get("engines", {}).items():
        p = entry["profile"]
        click.echo(f"engine     {precision:<8} {entry['file']:<22} TensorRT {entry['tensorrt']} on {entry['gpu']} "
                   f"(sm {entry['compute_capability']}); batch {p['min_batch']}..{p['max_batch']}, "
                   f"frames {p['min_frames']}..{p['max_frames']}")
    versions = ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items())
    click.echo(f"versions   {versions}")
    if data.get("machine"):  # the gate figures were measured with this CPU's int8 kernel
        from ..machine import describe

        click.echo(f"exported   on {describe(data['machine'])}")


main.add_command(transcribe)


def _add_registered_commands(group: click.Group) -> None:
    """Commands other installed packages register under the `w2vbert.commands` entry-point group
    (benchmarks.cli's `benchmark`, so exporter never imports benchmarks)."""
    from importlib.metadata import entry_points

    for point in entry_points(group="w2vbert.commands"):
        try:
            group.add_command(point.load(), point.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the other commands down
            log.warning("command %r (%s) did not load: %s: %s", point.name, point.value, type(exc).__name__, exc)


_add_registered_commands(main)
