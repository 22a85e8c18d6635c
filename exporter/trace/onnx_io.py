"""The one place that writes ONNX files: metadata, and weights embedded or in ONE external file.

A model whose weights pass the 2 GB protobuf limit gets them in a single `<file>.data`
next to it (plain torch.onnx.export writes one file per weight: hundreds for the 600M
model); below the limit they are embedded. Every writer of the package -- the trace, onnxsim,
the quantizers, the CPU form -- saves through :func:`save`, which also seals the file
(runtime.seal: a sha256 of its bytes and of its external data inside its metadata), so a bare
.onnx copied out of an artifact can still be checked.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime import seal
from runtime.errors import ExportError
from runtime.manifest import file_sha256

PROTOBUF_LIMIT = 2 * 1024 ** 3
MARGIN = 64 * 1024 ** 2  # the graph itself and the metadata also count against the limit


def set_metadata(model, metadata: dict[str, str], replace: bool = False) -> None:
    """Write `metadata` into model.metadata_props; `replace` drops what is there first."""
    if replace:
        del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def save(model, path: Path, data_file: str | None = None) -> None:
    """Save `model` to `path`, sealed: with every tensor over 1 kB in `data_file` (beside it) when
    given, else as it is (embedded weights, or the external-data references it already holds)."""
    import onnx

    _drop_metadata(model, (seal.KEY, seal.DATA_KEY))  # a rewritten model's old seal no longer holds
    if data_file is not None:
        # Writes the data file and turns the model's tensors into references to it.
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_file, size_threshold=1024)
    data = {name: _sha256(path.parent / name) for name in sorted(_external_files(model))}
    set_metadata(model, {seal.DATA_KEY: json.dumps(data), seal.KEY: seal.PLACEHOLDER})
    onnx.save_model(model, str(path))
    seal.seal(path)


def _drop_metadata(model, keys) -> None:
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in keys]
    if len(kept) != len(model.metadata_props):
        set_metadata(model, dict(kept), replace=True)


def _external_files(model) -> set[str]:
    return {entry.value for t in model.graph.initializer for entry in t.external_data if entry.key == "location"}


_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime) -> sha256: a 2 GB data file is read once per version


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def data_file_for(model, path: Path) -> str | None:
    """`<name>.data` when the model's weights need an external file, else None."""
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    return path.name + ".data" if weights >= PROTOBUF_LIMIT - MARGIN else None


def consolidate(raw: Path, final: Path, metadata: dict[str, str], replace: bool = False,
                transform=None) -> list[str]:
    """Load a written model with its weights, rewrite it, add metadata and save it as `final`.

    `replace`: drop the model's existing metadata first (a converted variant carries its source's).
    `transform`: a graph rewrite applied to the loaded ModelProto before saving. Returns the
    file names written (the model, and its data file when there is one).
    """
    import onnx

    model = onnx.load(str(raw), load_external_data=True)
    if transform is not None:
        transform(model)
    set_metadata(model, metadata, replace)
    data_file = data_file_for(model, final)
    save(model, final, data_file)
    return [final.name] + ([data_file] if data_file else [])


def check_onnx(path: Path) -> None:
    """onnx.checker full check (it runs strict shape inference); path-based for external data."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported graph {path.name} fails onnx.checker: {exc}") from exc
