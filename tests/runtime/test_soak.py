"""Long input and soak: each runs benchmarks.soak in a fresh process, so its RSS is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.export import export

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return export(None, tmp_path_factory.mktemp("soak") / "digits")


def _study(*args) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.soak", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ten_minutes_transcribe_in_bounded_memory(artifact):
    result = _study("long", artifact, "--minutes", 10)
    assert result["minutes"] >= 10
    # The bundled model transcribes its own samples right; chunk stitching may cost a word or two.
    assert result["word_errors"] <= 0.01 * result["words"], result
    # Measured 2026-11-27: ~330 MB peak for 10 min (README "Guarantees"); one 30 s chunk batch at a time.
    assert result["peak_rss"] < 600 * 2 ** 20, result


@pytest.mark.slow
def test_soak_rss_stays_flat(artifact):
    result = _study("soak", artifact, "--calls", 1000, "--warmup", 100)
    assert result["growth"] < 0.05, result
