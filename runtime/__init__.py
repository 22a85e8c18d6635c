"""Torch-free runtime of w2vbert-deploy: numpy + onnxruntime.

    from runtime import Session
    outputs = Session("artifact_dir").run(input_features, attention_mask)
"""

from __future__ import annotations

from .errors import (ArtifactError, CheckpointError, ConfigError, DependencyError, ExportError, GateError,
                     InputError, ParityError, W2VBertError)
from .features import FeatureExtractor
from .manifest import Manifest, load_manifest
from .session import Session

__all__ = ["Session", "FeatureExtractor", "Manifest", "load_manifest", "W2VBertError", "ArtifactError",
           "CheckpointError", "ConfigError", "DependencyError", "ExportError", "GateError", "InputError",
           "ParityError"]
__version__ = "0.1.0"
