"""`w2vbert verify`: re-check an artifact's integrity and its parity with the reference."""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.errors import ArtifactError, CheckpointError
from runtime.manifest import CPU_FORM, load_manifest

from .checkpoint import load_model
from .export import PARITY_FRAMES, onnx_parity
from .parity import OutputDiff, keep_worst

log = logging.getLogger("w2vbert")


def verify_artifact(artifact: str | Path, source: str | None = None, precision: str = "fp32",
                    frames=PARITY_FRAMES, backend: str = "onnxruntime") -> list[OutputDiff]:
    """Parity of one variant (onnxruntime) or one TensorRT plan (backend "tensorrt") vs the reference."""
    if backend not in ("onnxruntime", "tensorrt"):
        raise ArtifactError(f"backend {backend!r} is unknown; expected onnxruntime or tensorrt")
    manifest = load_manifest(artifact)
    if backend == "tensorrt":
        return _engine_parity(manifest, artifact, source, precision)
    variant = manifest.variant(precision)
    log.info("checking sha256 of every file, among them %s", ", ".join(
        dict.fromkeys(variant["files"] + variant.get(CPU_FORM, {}).get("files", []))))
    manifest.verify()
    model = _reference(manifest, source)
    worst: dict[str, OutputDiff] = {}
    for form in (variant, variant.get(CPU_FORM)):  # the CPU form (if any) is what provider "cpu" loads
        if form is not None:
            keep_worst(worst, _parity(manifest, model, variant, manifest.safe_path(form["file"]), precision, frames))
    return list(worst.values())


def _parity(manifest, model, variant, path: Path, precision: str, frames) -> list[OutputDiff]:
    if variant.get("frontend"):
        from runtime.features import FeatureExtractor
        from runtime.shapes import min_samples

        from .export_frontend import frontend_parity

        pre = manifest.data["preprocessor"]
        log.info("parity of %s vs numpy front end + PyTorch reference", path.name)
        return frontend_parity(model, path, FeatureExtractor.from_params(pre), int(pre.get("sampling_rate", 16000)),
                               min_samples(manifest.data["min_frames"], int(pre.get("stride", 2))))
    log.info("parity of %s vs the PyTorch reference at %s frames", path.name, list(frames))
    return onnx_parity(model, path, manifest.data["min_frames"], precision=precision, frames=frames)


def _reference(manifest, source):
    source = source or manifest.data.get("source")
    source = None if source == "default" else source
    try:
        model = load_model(source, head=manifest.head)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}. The artifact was exported from {manifest.data.get('source')!r}; "
                              "pass --source to compare against a checkpoint elsewhere") from exc
    if model.config.to_dict() != manifest.config:
        raise ArtifactError(f"the config of {source!r} differs from the artifact's config: it is not the "
                            "checkpoint this artifact was exported from")
    return model


def _engine_parity(manifest, artifact, source, precision) -> list[OutputDiff]:
    """The TensorRT plan of `precision` vs the reference, at frames inside its profile."""
    from runtime import Session

    from .export import backend_parity

    session = Session(artifact, precision=precision, provider="trt-engine")  # checks sha256, loads the plan
    profile = manifest.data["engines"][precision]["profile"]
    low, high = profile["min_frames"], profile["max_frames"]
    frames = sorted({low, min(high, 2 * low + 1)})
    model = _reference(manifest, source)
    log.info("parity of the %s TensorRT engine vs the PyTorch reference at %s frames", precision, frames)
    return backend_parity(model, session.run, manifest.data["min_frames"], f"engine-{precision}", frames,
                          f"model.{precision}.plan")
