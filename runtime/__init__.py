"""Torch-free runtime of w2vbert-deploy: numpy + onnxruntime.

    from runtime import Session
    outputs = Session("artifact_dir").run(input_features, attention_mask)

Names are imported on first use (as in exporter/__init__), so ``from runtime.errors import
InputError`` -- which every exporter module does -- loads neither the Session nor the front end.
"""

from __future__ import annotations

import importlib

# name -> the module that defines it
_EXPORTS = {
    "Session": "session", "FeatureExtractor": "features", "Manifest": "manifest", "load_manifest": "manifest",
    "Processor": "processor", "CTCTokenizer": "tokenizer", "pipeline": "pipelines",
    **{name: "errors" for name in ("W2VBertError", "ArtifactError", "CheckpointError", "ConfigError",
                                   "DependencyError", "ExportError", "GateError", "InputError", "OptionError",
                                   "ParityError")},
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
