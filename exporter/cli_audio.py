"""`w2vbert transcribe`: audio files through an artifact, printed per file (runtime only, no torch)."""

from __future__ import annotations

import contextlib
import sys
import json
from pathlib import Path

import click
import numpy as np

from runtime.audio import load_audio
from runtime.session import Session


def run_transcribe(artifact, paths: list[str], precision: str, provider: str, threads: int | None,
                   batch_size: int, chunk_seconds: float, overlap_seconds: float, as_json: bool,
                   out_dir: str, progress: bool = True) -> None:
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
