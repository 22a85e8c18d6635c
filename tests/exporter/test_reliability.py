"""Interrupted exports never leave a broken artifact; exports are reproducible byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from exporter.artifact import remove_stale_staging
from exporter.export import export
from runtime import Session
from runtime.manifest import load_manifest

from ..conftest import permissive_gate_args, permissive_quant

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIFFERENCES = {"created"}  # documented in exporter/README.md "Guarantees"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_sigkill_mid_export_keeps_previous_artifact(tmp_path):
    out = tmp_path / "art"
    export(None, out)
    before = _snapshot(out)
    proc = subprocess.Popen([sys.executable, "-m", "exporter.cli", "-q", "export", "-o", str(out), "--force",
                             "--precision", "fp32,fp16,int8,int8-qdq,int4", *permissive_gate_args()], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    partial = []
    while time.time() < deadline and not partial:  # wait until it is writing its staging dir
        partial = [p for p in tmp_path.glob(".art.partial-*") if any(p.iterdir())]
        time.sleep(0.02)
    assert partial, "the export never started writing"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _snapshot(out) == before  # the previous artifact is untouched and still loads
    Session(out).run(*_batch())
    # What the kill left is hidden, named after a dead PID, and has no manifest: never a result.
    leftovers = list(tmp_path.glob(".art.partial-*"))
    assert all(not (p / "manifest.json").exists() for p in leftovers)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["art"]
    export(None, out, force=True)  # the next run clears it
    assert not list(tmp_path.glob(".art.partial-*"))


def test_killed_swap_is_repaired(tmp_path):
    """A kill between moving the old artifact away and moving the new one in (where no atomic
    exchange exists) leaves `.OUT.old-*/OUT`; the next export puts it back first."""
    out = tmp_path / "art"
    export(None, out)
    before = _snapshot(out)
    old = tmp_path / ".art.old-x1"
    old.mkdir()
    os.replace(out, old / "art")
    remove_stale_staging(out)
    assert _snapshot(out) == before and not old.exists()


def test_export_is_byte_identical(tmp_path):
    precisions = ("fp32", "fp16", "int8", "int8-qdq", "int4")
    a = export(None, tmp_path / "a", precisions=precisions, with_frontend=True, quant=permissive_quant())
    b = export(None, tmp_path / "b", precisions=precisions, with_frontend=True, quant=permissive_quant())
    files_a, files_b = _snapshot(a), _snapshot(b)
    assert files_a.keys() == files_b.keys()
    for name in files_a:
        if name != "manifest.json":
            assert files_a[name] == files_b[name], f"{name} differs between two exports"
    ma, mb = json.loads(files_a["manifest.json"]), json.loads(files_b["manifest.json"])
    differing = {k for k in ma.keys() | mb.keys() if ma.get(k) != mb.get(k)}
    assert differing == MANIFEST_DIFFERENCES
    assert load_manifest(a).data["files"] == load_manifest(b).data["files"]


def _batch():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 40, 160)).astype(np.float32), np.ones((2, 40), np.int64)
