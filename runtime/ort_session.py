"""The one place onnxruntime sessions are made: the runtime's Session, the export's parity and gates,
the sherpa-onnx checks and every benchmark get the same settings from here.

Spinning is off unless asked for: onnxruntime's idle threads spin-wait for milliseconds after each
call, which steals the cores of whatever runs beside (another backend being timed, a test run). A
Session that owns its cores turns it on for the lowest latency.
"""

from __future__ import annotations

from pathlib import Path

from .errors import require

CPU = "CPUExecutionProvider"


def session_options(threads: int | None = None, spin: bool = False, memory_arena: bool = True,
                    profile_prefix: str | None = None):
    """onnxruntime.SessionOptions with the package's settings; `profile_prefix`: onnxruntime's own
    per-node profile is written to files starting with it."""
    ort = require("onnxruntime", "cpu", "running an ONNX model")
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = memory_arena
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def ort_session(model: str | Path | bytes, threads: int | None = None, spin: bool = False,
                memory_arena: bool = True, providers: list | None = None, profile_prefix: str | None = None):
    """An onnxruntime.InferenceSession of an ONNX file (or its bytes), on the CPU unless `providers` says."""
    ort = require("onnxruntime", "cpu", "running an ONNX model")
    options = session_options(threads, spin, memory_arena, profile_prefix)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers or [CPU])
