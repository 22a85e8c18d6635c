"""Torch side of w2vbert-deploy: reference model, checkpoint loading, ONNX export.

Heavy modules are imported on first use so ``import exporter.plan`` (no torch) stays light.
"""

from __future__ import annotations

__all__ = ["load_model", "export"]


def __getattr__(name):
    if name == "load_model":
        from .model.checkpoint import load_model

        return load_model
    if name == "export":
        from .export import export

        return export
    raise AttributeError(f"module 'exporter' has no attribute {name!r}")
