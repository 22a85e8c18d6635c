"""`w2vbert transcribe`: audio files through an artifact, printed per file (runtime only, no torch)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from runtime.providers import SESSION_PROVIDERS

from .common import verbosity

FORMATS = ("text", "json", "srt", "vtt")


@click.command()
@click.argument("artifact", type=click.Path())
@click.argument("audio", nargs=-1, required=True, type=click.Path())
@click.option("--precision", default="fp32", show_default=True, help="Artifact variant to run.")
@click.option("--provider", default="cpu", show_default=True, type=click.Choice(SESSION_PROVIDERS),
              help="onnxruntime's cpu / cuda / tensorrt, or openvino (the openvino extra; fp32, bf16, int8-qdq).")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: all cores).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Utterances (or chunks) per model call.")
@click.option("--chunk-seconds", default=30.0, show_default=True, help="CTC: chunk length for long audio (>= 1).")
@click.option("--overlap-seconds", default=2.0, show_default=True, help="CTC: context on each side of a chunk (>= 0).")
@click.option("--timestamps", is_flag=True, help="CTC: start and end seconds of every word.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: a line per file; json: an object per line; srt / vtt: subtitles (CTC, implies "
                   "--timestamps), to stdout for one file, else <out-dir>/<audio name>.srt|.vtt.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--out-dir", type=click.Path(),
              help="Where XVector / Model outputs are saved as <audio name>.npy [default: embeddings], and "
                   "subtitles of several files [default: subtitles].")
@click.option("--overwrite", is_flag=True, help="Replace .npy / subtitle files that already exist in --out-dir.")
@verbosity
@click.pass_context
def transcribe(ctx, artifact, audio, precision, provider, threads, batch_size, chunk_seconds, overlap_seconds,
               timestamps, fmt, as_json, out_dir, overwrite):
    """Run ARTIFACT on AUDIO files: text (CTC), labels (classification) or embeddings (XVector).

    wav / flac / ogg; other sample rates are resampled to 16 kHz; multi-channel files use the
    first channel (as transformers does). A file that cannot be read is reported and the others
    still run; the exit code is then non-zero.
    """
    from runtime.errors import OptionError

    if as_json and fmt not in ("text", "json"):
        raise OptionError(f"--json and --format {fmt} disagree; give one of them")
    run_transcribe(artifact, list(audio), precision=precision, provider=provider, threads=threads,
                   batch_size=batch_size, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                   fmt="json" if as_json else fmt, timestamps=timestamps, out_dir=out_dir,
                   progress=not ctx.find_root().obj["quiet"], overwrite=overwrite)


def run_transcribe(artifact, paths: list[str], precision: str, provider: str, threads: int | None,
                   batch_size: int, chunk_seconds: float, overlap_seconds: float, fmt: str = "text",
                   timestamps: bool = False, out_dir: str | None = None, progress: bool = True,
                   overwrite: bool = False) -> None:
    from runtime.errors import InputError, OptionError
    from runtime.session import Session  # here: `w2vbert --help` and `inspect` need no onnxruntime

    _refuse_frontend_variant(artifact, precision)
    session = Session(artifact, precision=precision, provider=provider, threads=threads)
    subtitles = fmt in ("srt", "vtt")
    if (timestamps or subtitles) and session.head != "CTC":
        raise OptionError(f"{'--format ' + fmt if subtitles else '--timestamps'} needs a CTC model; this one's "
                          f"head is {session.head}")
    timestamps = timestamps or subtitles
    pipe = session.audio_runner(batch_size=batch_size, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds)
    if subtitles:
        targets = {} if len(paths) == 1 else _file_targets(paths, Path(out_dir or "subtitles"), "." + fmt, overwrite)
    elif session.head in ("XVector", "Model"):
        targets = _file_targets(paths, Path(out_dir or "embeddings"), ".npy", overwrite)
    else:
        targets = {}
    waves, failed = _load_all(paths, pipe.rate, progress)
    if len(paths) == 1 and failed:
        raise failed[0]
    good = [i for i in range(len(paths)) if i not in failed]
    # Sorted by length so each batch pads little; printed back in the order given.
    order = sorted(good, key=lambda i: len(waves[i]))
    results = {}
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with _bar(groups, "running model", progress and bool(groups)) as bar:
        for group in bar:
            for i, result in zip(group, pipe([waves[i] for i in group], timestamps=timestamps)):
                results[i] = result
    for i, path in enumerate(paths):
        if i in failed:
            click.echo(f"error: {failed[i]}", err=True)  # each message names its file
        else:
            _emit(path, results[i], fmt, targets.get(i))
    if failed:
        raise InputError(f"{len(failed)} of {len(paths)} audio files could not be read (see above); "
                         f"the other {len(paths) - len(failed)} ran")


def _refuse_frontend_variant(artifact, precision: str) -> None:
    from runtime.errors import OptionError
    from runtime.manifest import load_manifest

    if Path(artifact).is_dir():
        variant = load_manifest(artifact).data["variants"].get(precision, {})
        if variant.get("frontend"):
            raise OptionError(f"--precision {precision} is the raw-audio graph for ONNX Runtime callers; transcribe "
                              "computes the same features itself: use --precision fp32 (the same model)")


def _file_targets(paths: list[str], out_dir: Path, suffix: str, overwrite: bool) -> dict[int, Path]:
    """Where each input's array or subtitles go; collisions and existing files refused first."""
    from runtime.errors import OptionError

    if out_dir.exists() and not out_dir.is_dir():
        raise OptionError(f"--out-dir {out_dir} is a file; give a directory (it is created when missing)")
    targets = {i: out_dir / (Path(p).stem + suffix) for i, p in enumerate(paths)}
    by_target: dict[Path, list[str]] = {}
    for i, target in targets.items():
        by_target.setdefault(target, []).append(paths[i])
    clashes = {t: ps for t, ps in by_target.items() if len(ps) > 1}
    if clashes:
        target, sources = next(iter(clashes.items()))
        raise OptionError(f"{' and '.join(sources)} would both be saved as {target}; give the files different "
                          "names, or run them with different --out-dir")
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing and not overwrite:
        raise OptionError(f"{', '.join(existing[:3])} already exist{'s' if len(existing) == 1 else ''}; pass "
                          "--overwrite to replace, or choose another --out-dir")
    return targets


def _load_all(paths: list[str], rate: int, progress: bool):
    """Every readable file's samples; {index: error message} for the others."""
    from runtime.audio import load_audio
    from runtime.errors import InputError

    waves, failed = {}, {}
    with _bar(list(enumerate(paths)), "loading audio", progress) as bar:
        for i, path in bar:
            try:
                waves[i] = load_audio(path, rate)
            except InputError as exc:
                failed[i] = exc
    return waves, failed


def _bar(items, label: str, shown: bool):
    if not shown:
        return contextlib.nullcontext(items)
    return click.progressbar(items, label=label, file=sys.stderr, show_pos=True)


def _emit(path: str, result, fmt: str, target: Path | None) -> None:
    if fmt in ("srt", "vtt"):
        from runtime.subtitles import to_srt, to_vtt

        text = (to_srt if fmt == "srt" else to_vtt)(result.words)
        if target is None:
            click.echo(text, nl=False)
        else:
            _write_new(target, text.encode("utf-8"))
            click.echo(f"{path}\t{target}")
        return
    record = {"file": path, **result.to_json()}
    array = result.embedding if result.embedding is not None else result.hidden
    if array is not None:
        buffer = io.BytesIO()
        np.save(buffer, array)
        _write_new(target, buffer.getvalue())
        record["saved"] = str(target)
        record.pop("embedding", None)
    if fmt == "json":
        click.echo(json.dumps(record))
    elif result.text is not None:
        click.echo(f"{path}\t{result.text}")
        for word in result.words or []:
            click.echo(f"\t{word['start']:.2f}\t{word['end']:.2f}\t{word['word']}")
    elif result.label is not None:
        click.echo(f"{path}\t{result.label['label']}\t{result.label['probability']:.3f}")
    elif result.frame_labels is not None:
        click.echo(f"{path}\t{' '.join(result.frame_labels)}")
    else:
        click.echo(f"{path}\t{record['saved']}")


def _write_new(target: Path, data: bytes) -> None:
    """Write through a temporary name and rename, so an interrupted run leaves no half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
