"""Backends as callables: an ONNX file on onnxruntime's CPU provider, features in or waveform in.

Every comparison of the package (export parity, the accuracy gates, verify) runs ONNX files
through these, so they all get the same session settings.
"""

from __future__ import annotations

from pathlib import Path

from runtime.ort_session import ort_session
from runtime.precisions import PRECISIONS


def _session(onnx_path: Path, threads: int | None):
    # no spin-waiting: parity runs beside other work (a benchmark, a test run) and must not steal cores
    return ort_session(onnx_path, threads=threads or None)


def ort_runner(onnx_path: Path, threads: int | None = None):
    """A features-in ONNX as run(features, mask) -> {output name: array}."""
    session = _session(onnx_path, threads)
    names = [o.name for o in session.get_outputs()]

    def run(features, mask):
        return dict(zip(names, session.run(None, {"input_features": features, "attention_mask": mask})))
    return run


def frontend_runner(onnx_path: Path, threads: int | None = None):
    """A raw-audio ONNX (--with-frontend) as run(waveform, lengths) -> {output name: array}."""
    session = _session(onnx_path, threads)
    names = [o.name for o in session.get_outputs()]

    def run(waveform, lengths):
        return dict(zip(names, session.run(None, {"waveform": waveform, "waveform_lengths": lengths})))
    return run


def openvino_runner(onnx_path: Path, hint: str | None, threads: int | None = None):
    """A features-in ONNX compiled by OpenVINO at inference precision `hint` (None: its own choice)."""
    from runtime.openvino_runner import OpenVINORunner

    runner = OpenVINORunner(onnx_path, hint, threads, cache_dir=None)

    def run(features, mask):
        return runner.run({"input_features": features, "attention_mask": mask})
    return run


def variant_runner(onnx_path: Path, precision: str, engine: str = "onnxruntime"):
    """The runner a precision's variant is judged on: onnxruntime, or OpenVINO (`engine`, or a
    precision onnxruntime cannot run) at the inference precision the row names."""
    row = PRECISIONS.get(precision)
    if engine == "openvino" or (row is not None and not row.onnxruntime):
        return openvino_runner(onnx_path, row.openvino_hint if row else None)
    return ort_runner(onnx_path)
