"""Artifact manifest: schema, loading, validation and sha256 verification (no torch).

An artifact directory holds ``manifest.json``, one or more ONNX variants (weights
in ONE external data file when over 2 GB) and the checkpoint's tokenizer and
preprocessor files. Every file is listed with its sha256 and size.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ArtifactError

MANIFEST_NAME = "manifest.json"
SCHEMA = "w2vbert-deploy/artifact"
SCHEMA_VERSION = 1
CPU_FORM = "cpu_form"  # written by exporter.steps.cpu_form
REQUIRED_KEYS = ("schema", "schema_version", "head", "config", "preprocessor", "inputs", "outputs", "variants")


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


@dataclass
class Manifest:
    root: Path
    data: dict[str, Any]

    @property
    def head(self) -> str:
        return self.data["head"]

    @property
    def config(self) -> dict[str, Any]:
        return self.data["config"]

    def variant(self, precision: str) -> dict[str, Any]:
        variants = self.data["variants"]
        if precision not in variants:
            raise ArtifactError(f"artifact {self.root} has no {precision!r} variant; "
                                f"it has: {', '.join(sorted(variants))}")
        return variants[precision]

    def form(self, precision: str, provider: str) -> dict[str, Any]:
        """The files of `precision` to load on `provider`: {"file", "files", ...}.

        The `ort` fp32 variants (features and raw audio) hold com.microsoft SkipLayerNormalization
        and also carry a CPU form with Add + LayerNormalization instead (onnxruntime's CPU kernel
        for the fused op is the slower one); the CPU provider loads that form, every other provider
        the variant itself. Variants without a CPU form (fp16, the quantized ones whose only graph
        is already unfused, tensorrt-target ones, artifacts from before) load as they are.
        """
        variant = self.variant(precision)
        return variant.get(CPU_FORM, variant) if provider == "cpu" else variant

    def safe_path(self, name: str) -> Path:
        """Resolve a file named by the manifest, refusing names that escape the artifact."""
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents:
            raise ArtifactError(f"manifest names file {name!r}, which lies outside {self.root}; refusing it")
        return path

    def verify(self, names: list[str] | None = None) -> None:
        """Check size and sha256 of the listed files (all of them by default)."""
        files = self.data.get("files", {})
        for name in names if names is not None else list(files):
            if name not in files:
                raise ArtifactError(f"{name!r} is not listed in {self.root / MANIFEST_NAME}")
            path = self.safe_path(name)
            if not path.is_file():
                raise ArtifactError(f"artifact file {path} is missing (listed in the manifest)")
            expected = files[name]
            size = path.stat().st_size
            if size != expected["bytes"]:
                raise ArtifactError(f"{path} has {size} bytes, the manifest says {expected['bytes']}: "
                                    "truncated or replaced; re-export the artifact")
            if file_sha256(path) != expected["sha256"]:
                raise ArtifactError(f"{path} does not match its sha256 in the manifest: the file was "
                                    "modified after export; re-export the artifact")


def load_manifest(root: str | Path) -> Manifest:
    # absolute once, here: files read later (tokenizer, engines) must not move with an os.chdir
    root = Path(os.path.abspath(root))
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST_NAME} in {root}; expected a directory written by `w2vbert export`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the artifact is corrupt") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ArtifactError(f"{path} is not a w2vbert-deploy manifest (schema {SCHEMA!r} expected)")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"{path} has schema_version {data.get('schema_version')!r}; this runtime reads "
                            f"version {SCHEMA_VERSION}: re-export with this version of w2vbert-deploy")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ArtifactError(f"{path} lacks required fields: {', '.join(missing)}")
    return Manifest(root, data)


# manifest field -> the ONNX metadata_props key that carries the same value (exporter.artifact.onnx_metadata)
DESCRIBED = ("head", "config", "preprocessor", "output_length_formula", "min_frames", "labels", "vocab_file")


def check_matches_model(manifest: Manifest, metadata: dict[str, str], model: str) -> None:
    """ArtifactError when manifest.json describes the model otherwise than the ONNX file's own metadata
    (an edited manifest: the runtime would build inputs or decode outputs for another model)."""
    for field in DESCRIBED:
        key = "w2vbert." + field
        if key not in metadata or field not in manifest.data:
            continue  # older files; the sha256 of the file still holds
        value = manifest.data[field]
        try:
            theirs = metadata[key] if isinstance(value, str) else json.loads(metadata[key])
        except ValueError as exc:
            raise ArtifactError(f"{model}: its metadata {key} is unreadable ({exc})") from exc
        if theirs != value:
            where, ours, exported = _difference(field, value, theirs)
            raise ArtifactError(f"{manifest.root / MANIFEST_NAME} says {where} = {_short(ours)}, but {model} was "
                                f"exported with {_short(exported)}: the manifest was edited; export again")


def _difference(name: str, ours, theirs):
    """The first differing entry of two values, as (dotted name, ours, theirs)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs), key=str):
            if ours.get(key) != theirs.get(key):
                return _difference(f"{name}.{key}", ours.get(key), theirs.get(key))
    return name, ours, theirs


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
