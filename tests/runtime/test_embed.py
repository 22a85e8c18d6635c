"""The runtime embedded in a C++ host: build runtime/embed/w2vbert_host.cpp with g++ and
`python3-config --embed`, run it, and compare its outputs with runtime.Session's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from exporter.export import export
from runtime import Session

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "runtime" / "embed" / "w2vbert_host.cpp"


def python_config() -> str | None:
    """python3-config of the interpreter running the tests (a venv has none of its own)."""
    version = sysconfig.get_config_var("VERSION")
    for candidate in (Path(sys.base_prefix) / "bin" / f"python{version}-config",
                      Path(sys.base_prefix) / "bin" / "python3-config"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("python3-config")


def pattern(n: int, scale: float) -> np.ndarray:
    """The host's input formula (w2vbert_host.cpp: pattern), in float64 then cast as there."""
    i = np.arange(n, dtype=np.float64)
    return (scale * np.sin(0.01 * i + 0.3 * (i % 7))).astype(np.float32)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    config = python_config()
    if shutil.which("g++") is None or config is None:
        pytest.skip(f"needs g++ and the python3-config of {sys.base_prefix} (a CPython build ships it; "
                    "Debian's python3-dev has it for Debian's own Python); .ci/run installs g++")
    binary = tmp_path_factory.mktemp("host") / "w2vbert_host"
    flags = subprocess.run(f"{config} --cflags --embed; {config} --ldflags --embed", shell=True,
                           capture_output=True, text=True, check=True).stdout.split()
    build = subprocess.run(["g++", "-O2", "-std=c++17", str(SOURCE), "-o", str(binary), *flags],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return binary


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return export(None, tmp_path_factory.mktemp("embed") / "digits", with_frontend=True)


def run_host(host: Path, *args, provider: str | None = None) -> subprocess.CompletedProcess:
    """As a service runs it: a bare PATH, no PYTHONPATH; W2VBERT_PYTHON names this interpreter (a venv's
    python sees the venv's site-packages, with the package installed in it)."""
    env = {"PATH": "/usr/bin:/bin", "W2VBERT_PYTHON": sys.executable, "HOME": os.environ.get("HOME", "/")}
    if provider:
        env["W2VBERT_PROVIDER"] = provider
    return subprocess.run([str(host), *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_host_features_equal_session(host, artifact, tmp_path):
    frames = 123
    done = run_host(host, artifact, "features", frames, tmp_path / "out.f32")
    assert done.returncode == 0, done.stderr
    expected = Session(artifact).run(pattern(frames * 160, 1.5).reshape(1, frames, 160))["logits"]
    assert done.stdout.split() == ["logits", "shape", *map(str, expected.shape)]
    got = np.fromfile(tmp_path / "out.f32", dtype=np.float32).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_host_runs_the_openvino_provider(host, artifact, tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra (pip install 'w2vbert-deploy[openvino]')")
    frames = 123
    done = run_host(host, artifact, "features", frames, tmp_path / "out.f32", provider="openvino")
    assert done.returncode == 0, done.stderr
    features = pattern(frames * 160, 1.5).reshape(1, frames, 160)
    expected = Session(artifact, provider="openvino").run(features)["logits"]
    got = np.fromfile(tmp_path / "out.f32", dtype=np.float32).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # the same engine on the same input (equal here)
    reference = Session(artifact).run(features)["logits"]
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4)  # the fp32 contract (compare.TOLERANCES)
    failed = run_host(host, artifact, "features", frames, tmp_path / "x.f32", provider="tpu")
    assert failed.returncode == 1 and "provider 'tpu' is unknown" in failed.stderr


def test_host_frontend_variant_equals_session(host, artifact, tmp_path):
    samples = 16000 * 2
    done = run_host(host, artifact, "waveform", samples, tmp_path / "out.f32")
    assert done.returncode == 0, done.stderr
    session = Session(artifact, precision="fp32-frontend")
    expected = session.run_frontend(pattern(samples, 0.3)[None])["logits"]
    got = np.fromfile(tmp_path / "out.f32", dtype=np.float32).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_host_reports_package_errors(host, tmp_path):
    done = run_host(host, tmp_path / "missing", "features", 50, tmp_path / "out.f32")
    assert done.returncode == 1
    assert "runtime.errors.ArtifactError" in done.stderr and "does not exist" in done.stderr


def test_import_runtime_is_light():
    """No torch or transformers, and fast: the figure is recorded in runtime/README.md."""
    code = ("import time, sys; t = time.perf_counter(); import runtime; "
            "print(time.perf_counter() - t, 'torch' in sys.modules, 'transformers' in sys.modules)")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"], out
    assert float(out[0]) < time.perf_counter() - started  # sanity: measured inside the child
