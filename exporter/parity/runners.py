"""Backends as callables: an ONNX file on onnxruntime's CPU provider, features in or waveform in.

Every comparison of the package (export parity, the accuracy gates, verify) runs ONNX files
through these, so they all get the same session settings.
"""

from __future__ import annotations

from pathlib import Path


def _session(onnx_path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # No spin-waiting: parity runs beside other work (a benchmark, a test run) and must not steal cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])


def ort_runner(onnx_path: Path, threads: int | None = None):
    """A features-in ONNX as run(features, mask) -> {output name: array}."""
    session = _session(onnx_path, threads)
    names = [o.name for o in session.get_outputs()]

    def run(features, mask):
        return dict(zip(names, session.run(None, {"input_features": features, "attention_mask": mask})))
    return run


def waveform_runner(onnx_path: Path, threads: int | None = None):
    """A raw-audio ONNX (--with-frontend) as run(waveform, lengths) -> {output name: array}."""
    session = _session(onnx_path, threads)
    names = [o.name for o in session.get_outputs()]

    def run(waveform, lengths):
        return dict(zip(names, session.run(None, {"waveform": waveform, "waveform_lengths": lengths})))
    return run
