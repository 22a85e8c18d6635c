"""A sha256 of an ONNX file kept inside the file, so a bare .onnx can show it is whole (no onnx package needed).

An artifact directory is protected by its manifest (sha256 of every file); a `.onnx` copied
out of it has only itself. So every file `w2vbert export` writes carries, in metadata_props:

* ``w2vbert.external_data``: {file name: sha256} of each external data file it reads ({} if none);
* ``w2vbert.digest``: sha256 of the file's own bytes with these 64 characters zeroed.

The digest entry is found by its exact protobuf bytes (a StringStringEntryProto: key field 1,
value field 2 of 64 bytes), so checking needs neither the onnx package nor a parse.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import ArtifactError
from .manifest import file_sha256

KEY = "w2vbert.digest"
DATA_KEY = "w2vbert.external_data"
PLACEHOLDER = "0" * 64
# key: field 1, length 14, "w2vbert.digest"; value: field 2, length 64
_DIGEST_ENTRY = b"\x0a" + bytes([len(KEY)]) + KEY.encode() + b"\x12\x40"
_DATA_ENTRY = b"\x0a" + bytes([len(DATA_KEY)]) + DATA_KEY.encode() + b"\x12"


def _locate(data: bytes, path: Path) -> int:
    """Offset of the digest's 64 characters in `data`; ArtifactError when there is not exactly one."""
    first = data.find(_DIGEST_ENTRY)
    if first < 0:
        raise ArtifactError(f"{path} carries no w2vbert digest: not written by this version of `w2vbert export`, "
                            "or edited (Session(..., verify=False) loads it unchecked)")
    if data.find(_DIGEST_ENTRY, first + 1) >= 0:
        raise ArtifactError(f"{path} carries more than one w2vbert digest; refusing it")
    return first + len(_DIGEST_ENTRY)


def seal(path: Path) -> str:
    """Replace the placeholder digest in `path` (written with PLACEHOLDER as KEY's value) by the real one."""
    data = bytearray(Path(path).read_bytes())
    at = _locate(bytes(data), path)
    if data[at:at + 64] != PLACEHOLDER.encode():
        raise ValueError(f"{path}: the digest entry does not hold the placeholder")
    digest = hashlib.sha256(data).hexdigest()
    data[at:at + 64] = digest.encode()
    Path(path).write_bytes(bytes(data))
    return digest


def check(path: Path) -> None:
    """ArtifactError unless `path` (and each external data file it names) is exactly as exported."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    at = _locate(bytes(data), path)
    recorded = bytes(data[at:at + 64]).decode("ascii", "replace")
    data[at:at + 64] = PLACEHOLDER.encode()
    if hashlib.sha256(data).hexdigest() != recorded:
        raise ArtifactError(f"{path} is damaged or was modified after export: its bytes do not match the "
                            "sha256 it carries")
    for name, expected in _external_data(bytes(data), path).items():
        target = path.parent / name
        if not target.is_file():
            raise ArtifactError(f"{path} reads its weights from {target}, which is missing")
        if file_sha256(target) != expected:
            raise ArtifactError(f"{target} (the weights of {path.name}) is damaged or was modified after export")


def _external_data(data: bytes, path: Path) -> dict[str, str]:
    """The DATA_KEY entry's JSON ({file: sha256}); its bytes are covered by the digest, so it is trusted."""
    at = data.find(_DATA_ENTRY)
    if at < 0:
        return {}
    at += len(_DATA_ENTRY)
    length, shift = 0, 0
    while True:  # protobuf varint
        byte = data[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    try:
        table = json.loads(data[at:at + length])
    except ValueError as exc:
        raise ArtifactError(f"{path}: unreadable {DATA_KEY} entry ({exc})") from exc
    names = [str(n) for n in table]
    if any(Path(n).name != n for n in names):  # a name must stay beside the model
        raise ArtifactError(f"{path} names external data outside its directory: {names}")
    return {str(n): str(v) for n, v in table.items()}
