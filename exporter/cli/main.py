"""`w2vbert` command line: a thin shell over exporter/ and runtime/ functions.

torch is imported only by the commands that need it, so `w2vbert inspect` works with the
runtime alone. User errors print one line and exit with the error type's code (a missing
optional dependency included: exit 8 with the pip command); `--debug` shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from runtime.errors import OptionError, W2VBertError
from runtime.precisions import PRECISIONS, engines_of

from ..plan import CALIBRATORS, DEFAULT_OPSET, HEAD_NAMES, TARGETS
from .common import configure_logging, missing_extra, verbosity
from .serve import serve
from .summary import inspect_artifact, print_summary
from .transcribe import transcribe

log = logging.getLogger("w2vbert")


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad option value: one line, as the package's own errors
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = exc.ctx.command_path if exc.ctx else "w2vbert"
            click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except (W2VBertError, ImportError) as exc:
            error = exc if isinstance(exc, W2VBertError) else missing_extra(exc)
            if error is None or (ctx.obj and ctx.obj.get("debug")):
                raise
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="w2vbert-deploy", prog_name="w2vbert")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Only print warnings, errors and results.")
@click.option("-v", "--verbose", is_flag=True, help="Also print debug lines and the libraries' own warnings.")
@click.pass_context
def main(ctx, debug, quiet, verbose):
    """Export Wav2Vec2-BERT checkpoints to verified ONNX artifacts and run them."""
    ctx.obj = {"debug": debug, "quiet": quiet, "verbose": verbose}
    configure_logging(debug, quiet, verbose)


@main.command()
@click.argument("source", required=False)
@click.option("-o", "--out", required=True, type=click.Path(), help="Artifact directory to write.")
@click.option("--head", type=click.Choice(HEAD_NAMES), help="Override the head named by config.json `architectures`.")
@click.option("--opset", default=DEFAULT_OPSET, show_default=True, type=int, help="ONNX opset (>= 17).")
@click.option("--precision", default="fp32", show_default=True,
              help="Comma-separated, of " + ", ".join(f"{p.name} ({'/'.join(p.targets)})" for p in PRECISIONS.values())
                   + ". fp32 is always built; the others are gated against it.")
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
@click.option("--sherpa-onnx", "sherpa_onnx", is_flag=True,
              help="CTC heads: also write OUT/sherpa-onnx/ for sherpa-onnx (C, C++, Go, Rust, Java, mobile).")
@verbosity
def export(source, out, head, opset, precision, calibration, calibrator, gate_data, gate_overrides, keep_fp32,
           force, target, with_frontend, engine, min_seconds, opt_seconds, max_seconds, opt_batch, max_batch,
           engine_cache, triton_repo, triton_name, triton_gpu, sherpa_onnx):
    """Export SOURCE (checkpoint dir or preset; default: the bundled model) to OUT.

    SOURCE is a Hugging Face checkpoint directory (config.json + model.safetensors)
    or a preset: `tiny`, `w2v-bert-2.0` (random weights, the 600M architecture).
    """
    from runtime.manifest import load_manifest

    from ..export import export as run_export
    from ..plan import TritonPlan
    from ..quantize.gates import parse_overrides
    from ..steps.precisions import QuantOptions

    precisions = tuple(p.strip() for p in precision.split(",") if p.strip())
    quant = QuantOptions(calibration=calibration, calibrator=calibrator, gate_data=gate_data,
                         gates=parse_overrides(gate_overrides), keep_fp32=keep_fp32)
    profile = dict(min_seconds=min_seconds, opt_seconds=opt_seconds, max_seconds=max_seconds,
                   opt_batch=opt_batch, max_batch=max_batch) if engine else None
    triton = TritonPlan(Path(triton_repo), triton_name, triton_gpu, max_batch) if triton_repo else None
    path = run_export(source, out, head=head, opset=opset, precisions=precisions, force=force,
                      with_frontend=with_frontend, target=target, quant=quant, engine=profile,
                      engine_cache=engine_cache, triton=triton, sherpa_onnx=sherpa_onnx)
    print_summary(load_manifest(path))


@main.command()
@click.argument("artifact", type=click.Path())
@click.option("--source", help="Checkpoint dir or preset to compare with (default: the one in the manifest).")
@click.option("--precision", help="One variant to check [every variant; --backend tensorrt: fp32].")
@click.option("--backend", type=click.Choice(["onnxruntime", "openvino", "tensorrt"]), default="onnxruntime",
              show_default=True, help="openvino: the variants OpenVINO runs, compiled by it; tensorrt: the "
              "model.<precision>.plan engine (needs a GPU). bf16 is always checked on OpenVINO.")
@click.option("--gate-data", type=click.Path(exists=True),
              help="Reduced precisions: held-out audio / .npy to judge on [the data recorded at export].")
@click.option("--gate", "gate_overrides", multiple=True, metavar="[PRECISION.]KEY=VALUE",
              help="Reduced precisions: tighten or relax a recorded gate threshold (repeatable).")
@verbosity
def verify(artifact, source, precision, backend, gate_data, gate_overrides):
    """Re-check ARTIFACT: sha256 of every file, fp32 parity against the PyTorch reference, and each
    reduced precision's accuracy gate on the data and thresholds its export recorded (needs the
    export extra)."""
    from runtime.manifest import load_manifest

    from ..quantize.gates import GateRow, parse_overrides
    from ..verify import verify_artifact

    overrides = parse_overrides(gate_overrides)
    manifest = load_manifest(artifact)
    have = sorted(manifest.data.get("engines", {}) if backend == "tensorrt" else manifest.data["variants"])
    if precision is not None and precision not in have and (backend != "tensorrt" or have):
        raise OptionError(f"--precision {precision!r}: {artifact} has no such "
                          f"{'TensorRT engine' if backend == 'tensorrt' else 'variant'}; it has {', '.join(have)}")
    if precision is not None or backend == "tensorrt":
        precisions = [precision or "fp32"]
    else:
        precisions = [p for p in manifest.data["variants"] if backend != "openvino" or "openvino" in engines_of(p)]
    for i, name in enumerate(precisions):
        rows = verify_artifact(artifact, source=source, precision=name, backend=backend, gate_data=gate_data,
                               gates=overrides, check_files=i == 0)
        for row in rows:
            click.echo(row.row())
        what = "gate" if rows and isinstance(rows[0], GateRow) else "parity"
        click.echo(f"{artifact}: {name} {what} ok ({'openvino' if engines_of(name) == ('openvino',) else backend})")
    if precision is None and backend == "onnxruntime" and manifest.data.get("sherpa_onnx"):
        from ..verify import verify_sherpa

        for row in verify_sherpa(artifact, source=source, gate_data=gate_data, gates=overrides):
            click.echo(row.row())
        gate = " and int8 gate" if manifest.data["sherpa_onnx"].get("int8") else ""
        click.echo(f"{artifact}: sherpa-onnx parity{gate} ok")


@main.command()
@click.argument("artifact", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@verbosity
def inspect(artifact, as_json):
    """Print the manifest summary of ARTIFACT (runtime only, no torch); a missing file is an error."""
    inspect_artifact(artifact, as_json)


main.add_command(transcribe)
main.add_command(serve)


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
