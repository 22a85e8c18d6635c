"""A --work-dir keeps one source's exports for the next run; it must never serve them for another.

Every file in it (the written checkpoint, our export, the plain export, the CTranslate2 and
OpenVINO inputs) is reused when it exists, found by name alone. A run for another source in the
same folder would time the old model under the new name, so the folder records what it was made
from (`source.json`) and a run for anything else is refused; nothing in it is deleted.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.errors import InputError
from runtime.manifest import MANIFEST_NAME, load_manifest

STAMP = "source.json"


def source_identity(source: str | None) -> dict:
    """What a work dir's files are made from: an artifact, a preset, or a checkpoint with its files'
    sizes and modification times (a checkpoint retrained in place is another source)."""
    from exporter.model.sources import resolve_source

    if source is not None and (Path(source) / MANIFEST_NAME).is_file():
        return {"artifact": str(Path(source).resolve()), "created": load_manifest(source).data.get("created")}
    resolved = resolve_source(source)
    if resolved.kind == "preset":
        return {"preset": resolved.name}
    files = sorted(p for p in resolved.path.iterdir() if p.is_file())
    return {"checkpoint": resolved.label,
            "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}


def claim(work: Path, source: str | None) -> None:
    """Tie `work` to `source`, or refuse when it holds another source's files (or unknown ones)."""
    identity = source_identity(source)
    stamp = work / STAMP
    if stamp.is_file():
        try:
            recorded = json.loads(stamp.read_text())
        except ValueError:
            recorded = None
        if recorded != identity:
            if isinstance(recorded, dict) and _name(recorded) == _name(identity):
                held = f"{_name(identity)} as it was before its files changed"
            else:
                held = _name(recorded)
            raise InputError(f"--work-dir {work} holds the exports of {held}, not of {_name(identity)}; "
                             "pass another --work-dir (this one is left as it is)")
        return
    if work.is_dir() and any(work.iterdir()):
        raise InputError(f"--work-dir {work} is not empty and has no {STAMP} saying what its files were made "
                         "from, so they cannot be reused safely; pass an empty or new directory")
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(identity, indent=1) + "\n")


def _name(identity: dict | None) -> str:
    if isinstance(identity, dict):
        for kind in ("preset", "checkpoint", "artifact"):
            if kind in identity:
                return f"{kind} {identity[kind]!r}"
    return f"something unknown (its {STAMP} is unreadable)"
