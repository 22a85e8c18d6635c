"""``Session``: load an artifact (or a bare .onnx), validate input, run with onnxruntime.

One Session may be shared by threads: onnxruntime's ``InferenceSession.run`` is
thread-safe and the validation here keeps no state.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError, DependencyError, InputError, require
from .inputs import check_features, check_mask
from .manifest import Manifest, load_manifest
from .shapes import min_frames

log = logging.getLogger("w2vbert")

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
METADATA_PREFIX = "w2vbert."


class Session:
    """Run an exported model.

    Args:
        path: artifact directory written by ``w2vbert export``, or a bare ``.onnx``.
        precision: which variant of the artifact to load ("fp32", ...).
        provider: "cpu", "cuda" or "tensorrt" (onnxruntime execution provider).
        threads: intra-op threads; None lets onnxruntime use every core.
        verify: check sha256 of the model files against the manifest (slow for 2 GB models).
    """

    def __init__(self, path: str | Path, precision: str = "fp32", provider: str = "cpu",
                 threads: int | None = None, verify: bool = True):
        ort = require("onnxruntime", "cpu", "running an exported model")
        path = Path(path)
        self.manifest: Manifest | None = None
        if path.is_dir():
            self.manifest = load_manifest(path)
            variant = self.manifest.variant(precision)
            if verify:
                self.manifest.verify(variant["files"])
            model_path = self.manifest.safe_path(variant["file"])
            self.head, self.config = self.manifest.head, self.manifest.config
        elif path.is_file():
            model_path = path
            self.head, self.config = _read_metadata(path)
        else:
            raise ArtifactError(f"{path} does not exist; expected an artifact directory or a .onnx file")
        self.precision = precision
        self.path = model_path
        self._session = _make_session(ort, model_path, provider, threads)
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        if self.input_names != ["input_features", "attention_mask"]:
            raise ArtifactError(f"{model_path} has inputs {self.input_names}; expected "
                                "['input_features', 'attention_mask']")
        self.feature_dim = int(self.config["feature_projection_input_dim"])
        self.min_frames = min_frames(self.config, self.head)

    def run(self, input_features, attention_mask=None) -> dict[str, np.ndarray]:
        """input_features float [B, T, 160], attention_mask int/bool [B, T] or None -> outputs by name."""
        x = check_features(input_features, self.feature_dim)
        mask = check_mask(attention_mask, x.shape[0], x.shape[1], self.min_frames)
        try:
            values = self._session.run(None, {"input_features": x, "attention_mask": mask})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputError(f"onnxruntime failed on input of shape {x.shape}: {exc}") from exc
        outputs = dict(zip(self.output_names, values))
        for name, value in outputs.items():
            if not np.isfinite(value).all():
                raise InputError(f"output {name!r} holds NaN/Inf for input of shape {x.shape}; "
                                 "the input is outside what this model handles")
        return outputs

    __call__ = run


def _read_metadata(path: Path) -> tuple[str, dict[str, Any]]:
    onnx_meta = require("onnxruntime", "cpu", "reading ONNX metadata")
    try:
        meta = onnx_meta.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as exc:
        raise ArtifactError(f"{path} cannot be loaded by onnxruntime: {exc}") from exc
    props = meta.custom_metadata_map
    try:
        return props[METADATA_PREFIX + "head"], json.loads(props[METADATA_PREFIX + "config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} lacks w2vbert metadata ({exc}); was it written by `w2vbert export`?") from exc


def _make_session(ort, model_path: Path, provider: str, threads: int | None):
    if provider not in PROVIDERS:
        raise InputError(f"provider {provider!r} is unknown; expected one of {', '.join(PROVIDERS)}")
    name = PROVIDERS[provider]
    if name not in ort.get_available_providers():
        raise DependencyError(f"onnxruntime here offers {ort.get_available_providers()}, not {name}; "
                              "for GPUs install 'w2vbert-deploy[gpu]' (without the cpu extra) on a CUDA machine")
    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=[name])
    except Exception as exc:
        raise ArtifactError(f"onnxruntime cannot load {model_path}: {exc}") from exc
