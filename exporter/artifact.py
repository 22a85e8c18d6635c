"""Artifact directory: manifest assembly and atomic placement.

Everything is written into a hidden staging directory next to OUT and renamed
into place only after every check passed, so OUT is either the previous
artifact or the complete new one -- never half-written. Staging directories
carry the writer's PID; ones left by a killed export are removed on the next run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from runtime.errors import ExportError, OptionError
from runtime.manifest import MANIFEST_NAME, SCHEMA, SCHEMA_VERSION, file_entry
from runtime.shapes import min_frames, output_length_formula

from .machine import machine
from .model.config import W2VBertConfig
from .model.registry import HEADS, output_shapes

log = logging.getLogger("w2vbert")

# SeamlessM4TFeatureExtractor defaults, overridden by a checkpoint's preprocessor_config.json.
PREPROCESSOR_DEFAULTS = {
    "feature_extractor_type": "SeamlessM4TFeatureExtractor",
    "sampling_rate": 16000, "feature_size": 80, "num_mel_bins": 80, "stride": 2,
    "padding_value": 0.0, "padding_side": "right", "return_attention_mask": True,
    "do_normalize_per_mel_bins": True,
}


def preprocessor_params(checkpoint_dir: Path | None) -> dict[str, Any]:
    params = dict(PREPROCESSOR_DEFAULTS)
    if checkpoint_dir is not None and (checkpoint_dir / "preprocessor_config.json").is_file():
        try:
            params.update(json.loads((checkpoint_dir / "preprocessor_config.json").read_text()))
        except json.JSONDecodeError as exc:
            raise ExportError(f"{checkpoint_dir / 'preprocessor_config.json'} is not valid JSON: {exc}") from exc
    return params


def io_spec(config: W2VBertConfig, head: str) -> tuple[list[dict], list[dict]]:
    """Names, dtypes and symbolic shapes of the model interface."""
    feat = config.feature_projection_input_dim
    inputs = [{"name": "input_features", "dtype": "float32", "shape": ["batch", "frames", feat]},
              {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "frames"]}]
    outputs = [{"name": name, "dtype": "float32", "shape": shape}
               for name, shape in output_shapes(head, config.to_dict()).items()]
    return inputs, outputs


def tool_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the tools an artifact (or a benchmark, with its `extra` peers) was made with."""
    versions = {}
    for dist in ("w2vbert-deploy", "torch", "onnx", "onnxruntime", "onnxsim", "transformers", *extra):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def build_manifest(config: W2VBertConfig, head: str, source: str, opset: int,
                   preprocessor: dict, variants: dict, side_files: list[str]) -> dict[str, Any]:
    inputs, outputs = io_spec(config, head)
    config_dict = config.to_dict()
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "head": head,
        "config": config_dict,
        "preprocessor": preprocessor,
        "inputs": inputs,
        "outputs": outputs,
        "output_length_formula": output_length_formula(config_dict),
        "min_frames": min_frames(config_dict, head),
        "labels": config_dict["id2label"] if HEADS[head].labels else None,
        "vocab_file": "vocab.json" if "vocab.json" in side_files else None,
        "opset": opset,
        "versions": tool_versions(),
        "machine": machine(),  # int8 results depend on the CPU's int8 kernel (exporter.machine)
        "variants": variants,
        "files": {},
    }


def variant_entry(file: str, files: list[str], target: str, precision: str, **fields) -> dict[str, Any]:
    """One manifest variant: its file, every file it reads, target and precision, then `fields`
    (parity figures, gate record, fused-op counts, ...) in the order given."""
    return {"file": file, "files": files, "target": target, "precision": precision, **fields}


def onnx_metadata(manifest: dict[str, Any], **extra: str) -> dict[str, str]:
    """What a bare .onnx carries in metadata_props so that it describes itself (sherpa-onnx style)."""
    keys = ("head", "preprocessor", "output_length_formula", "min_frames", "labels", "vocab_file", "inputs",
            "outputs")
    meta = {f"w2vbert.{k}": (manifest[k] if isinstance(manifest[k], str) else json.dumps(manifest[k]))
            for k in keys}
    meta["w2vbert.config"] = json.dumps(manifest["config"])
    meta["w2vbert.schema_version"] = str(manifest["schema_version"])
    meta.update({f"w2vbert.{k}": v for k, v in extra.items()})
    return meta


def finish_manifest(staging: Path, manifest: dict[str, Any]) -> None:
    """List every file of the staging dir with sha256 and size, then write manifest.json."""
    umask = os.umask(0)
    os.umask(umask)
    for path in staging.rglob("*"):  # onnx writes external data owner-only; artifacts are shared
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    manifest["files"] = {p.relative_to(staging).as_posix(): file_entry(p) for p in sorted(staging.rglob("*"))
                         if p.is_file() and p.relative_to(staging).as_posix() != MANIFEST_NAME}
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def copy_side_files(checkpoint_dir: Path | None, staging: Path, names: tuple[str, ...]) -> list[str]:
    copied = []
    if checkpoint_dir is not None:
        for name in names:
            if (checkpoint_dir / name).is_file():
                shutil.copyfile(checkpoint_dir / name, staging / name)
                copied.append(name)
    return copied


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(out: Path) -> None:
    """Clean up after killed exports: restore a moved-away artifact, drop dead staging dirs."""
    for old in out.parent.glob(f".{out.name}.old-*"):
        if not out.exists() and (old / out.name).is_dir():
            log.info("restoring %s from %s (an export was killed while replacing it)", out, old)
            os.replace(old / out.name, out)
        shutil.rmtree(old, ignore_errors=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(stale.name.split("-")[-2])
        except (ValueError, IndexError):
            continue
        if not _pid_alive(pid):
            log.info("removing %s left by an interrupted export", stale)
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staged_output(out: Path):
    """Yield a staging dir; on success atomically replace `out` with it, on error remove it.

    Whether `out` may be replaced is decided before (exporter.plan.make_plan)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    except OSError as exc:  # e.g. a directory that refuses new entries (/proc), a full or read-only disk
        raise OptionError(f"cannot write the artifact next to {out}: {exc.strerror or exc} "
                          f"({exc.filename or out.parent})") from exc
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; an artifact is meant to be shared
    try:
        yield staging
        if out.exists() and _exchange(staging, out):
            shutil.rmtree(staging, ignore_errors=True)  # now holds the previous artifact
        else:
            old = None
            if out.exists():  # no atomic exchange here: a kill between the renames is repaired
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))  # by the next run
                os.replace(out, old / out.name)
            os.replace(staging, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
