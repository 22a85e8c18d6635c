"""`w2vbert transcribe`: audio files through an artifact, printed per file (runtime only, no torch)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click
import numpy as np


@click.command()
@click.argument("artifact", type=click.Path())
@click.argument("audio", nargs=-1, required=True, type=click.Path())
@click.option("--precision", default="fp32", show_default=True, help="Artifact variant to run.")
@click.option("--provider", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "tensorrt"]))
@click.option("--threads", type=int, help="onnxruntime intra-op threads (default: all cores).")
@click.option("--batch-size", default=8, show_default=True, help="Utterances (or chunks) per model call.")
@click.option("--chunk-seconds", default=30.0, show_default=True, help="CTC: chunk length for long audio.")
@click.option("--overlap-seconds", default=2.0, show_default=True, help="CTC: context on each side of a chunk.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--out-dir", type=click.Path(), default="embeddings", show_default=True,
              help="Where XVector / Model outputs are saved as <audio name>.npy.")
@click.pass_context
def transcribe(ctx, artifact, audio, precision, provider, threads, batch_size, chunk_seconds, overlap_seconds,
               as_json, out_dir):
    """Run ARTIFACT on AUDIO files: text (CTC), labels (classification) or embeddings (XVector).

    wav / flac / ogg; other sample rates are resampled to 16 kHz; multi-channel files use the
    first channel (as transformers does).
    """
    run_transcribe(artifact, list(audio), precision=precision, provider=provider, threads=threads,
                   batch_size=batch_size, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                   as_json=as_json, out_dir=out_dir, progress=not ctx.obj["quiet"])


def run_transcribe(artifact, paths: list[str], precision: str, provider: str, threads: int | None,
                   batch_size: int, chunk_seconds: float, overlap_seconds: float, as_json: bool,
                   out_dir: str, progress: bool = True) -> None:
    from runtime.audio import load_audio
    from runtime.session import Session  # here: `w2vbert --help` and `inspect` need no onnxruntime

    session = Session(artifact, precision=precision, provider=provider, threads=threads)
    pipe = session.pipeline(batch_size=batch_size, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds)
    waves = []
    with _bar(paths, "loading audio", progress) as bar:
        for path in bar:
            waves.append(load_audio(path, pipe.rate))
    # Sorted by length so each batch pads little; printed back in the order given.
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    results = [None] * len(waves)
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with _bar(groups, "running model", progress) as bar:
        for group in bar:
            for i, result in zip(group, pipe([waves[i] for i in group])):
                results[i] = result
    for path, result in zip(paths, results):
        _emit(path, result, as_json, Path(out_dir))


def _bar(items, label: str, shown: bool):
    if not shown:
        return contextlib.nullcontext(items)
    return click.progressbar(items, label=label, file=sys.stderr, show_pos=True)


def _emit(path: str, result, as_json: bool, out_dir: Path) -> None:
    record = {"file": path, **result.to_json()}
    array = result.embedding if result.embedding is not None else result.hidden
    if array is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / (Path(path).stem + ".npy")
        np.save(target, array)
        record["saved"] = str(target)
        record.pop("embedding", None)
    if as_json:
        click.echo(json.dumps(record))
    elif result.text is not None:
        click.echo(f"{path}\t{result.text}")
    elif result.label is not None:
        click.echo(f"{path}\t{result.label['label']}\t{result.label['probability']:.3f}")
    elif result.frame_labels is not None:
        click.echo(f"{path}\t{' '.join(result.frame_labels)}")
    else:
        click.echo(f"{path}\t{record['saved']}")
