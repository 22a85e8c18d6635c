"""`w2vbert verify`: re-check an artifact's integrity, its parity and its accuracy gates.

fp32 variants are compared with the PyTorch reference (tensor parity, tolerances in
exporter.parity.compare). Reduced precisions are judged the way the export judged them: the same
gate (exporter.quantize.gates.evaluate) against the fp32 variant, on the gate data and with the
thresholds the export recorded, reported beside the figures it recorded. On the machine that
exported, verify reproduces the export's figures exactly; elsewhere int8 figures move with
the CPU's int8 kernel (exporter.machine), which is why the verdict is the gate's, not a match.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.errors import ArtifactError, CheckpointError, GateError, InputError
from runtime.manifest import CPU_FORM, load_manifest

from .model.checkpoint import load_model
from .parity.compare import OutputDiff
from .parity.reference import PARITY_FRAMES, backend_parity, frontend_parity, onnx_parity
from .parity.runners import ort_runner, variant_runner
from .quantize.calibration import gate_data_record, held_out_batches
from .quantize.gates import evaluate, with_overrides

log = logging.getLogger("w2vbert")
BACKENDS = ("onnxruntime", "openvino", "tensorrt")


def verify_artifact(artifact: str | Path, source: str | None = None, precision: str = "fp32",
                    frames=PARITY_FRAMES, backend: str = "onnxruntime", gate_data=None, gates=None,
                    check_files: bool = True) -> list:
    """Check one variant (onnxruntime or "openvino") or one TensorRT plan (backend "tensorrt"); raise on failure.

    Returns the rows to print: OutputDiff for fp32 variants and plans, gates.GateRow for
    reduced precisions. `gate_data`: held-out audio / .npy to judge a reduced precision on
    (default: the data its export recorded); `gates`: gates.parse_overrides(...) applied on
    top of the recorded thresholds. `check_files`: False skips the sha256 of every file (a
    caller checking several variants of one artifact checks them once).
    """
    if backend not in BACKENDS:
        raise ArtifactError(f"backend {backend!r} is unknown; expected {', '.join(BACKENDS)}")
    manifest = load_manifest(artifact)
    if backend == "tensorrt":
        return _engine_parity(manifest, artifact, source, precision)
    variant = manifest.variant(precision)
    if check_files:
        log.info("checking sha256 of every file, among them %s", ", ".join(
            dict.fromkeys(variant["files"] + variant.get(CPU_FORM, {}).get("files", []))))
        manifest.verify()
    if precision != "fp32" and not variant.get("frontend"):
        return _gate(manifest, variant, precision, gate_data, gates, backend)
    model = _reference(manifest, source)
    if backend == "openvino":
        return _openvino_parity(manifest, model, precision, frames)
    rows: list[OutputDiff] = []
    for form in (variant, variant.get(CPU_FORM)):  # the CPU form (if any) is what provider "cpu" loads
        if form is not None:
            for row in _parity(manifest, model, variant, manifest.safe_path(form["file"]), precision, frames):
                row.form = form["file"]  # one line per file checked: a CPU form's error is its own
                rows.append(row)
    return rows


def _openvino_parity(manifest, model, precision: str, frames) -> list[OutputDiff]:
    """The variant compiled by OpenVINO (Session(provider="openvino")) vs the PyTorch reference."""
    from runtime import Session

    session = Session(manifest.root, precision=precision, provider="openvino", verify=False)  # files: checked
    log.info("parity of %s on %s vs the PyTorch reference at %s frames", session.path.name, session.engine,
             list(frames))
    return backend_parity(model, session.run, manifest.data["min_frames"], precision, frames, session.path.name)


def _gate(manifest, variant, precision: str, gate_data, overrides, backend: str = "onnxruntime") -> list:
    """Re-run the export's accuracy gate of `precision` on its recorded (or the given) data."""
    recorded = variant.get("gate")
    if not recorded or "thresholds" not in recorded:
        raise ArtifactError(f"variant {precision} of {manifest.root} has no gate record; re-export it")
    path = _gate_path(variant.get("gate_data"), gate_data, precision)
    data = gate_data_record(path)
    same = isinstance(variant.get("gate_data"), dict) and variant["gate_data"].get("sha256") == data["sha256"]
    if not same:
        log.warning("%s: the gate data (%s) is not what the export judged on: the recorded figures are not "
                    "comparable, only the thresholds apply", precision, data["label"])
    _warn_other_kernel(manifest, precision)
    config = manifest.config
    batches = held_out_batches(path, manifest.data["preprocessor"], config["feature_projection_input_dim"],
                               manifest.data["min_frames"])
    limits = with_overrides(recorded["thresholds"], precision, overrides, manifest.head)
    log.info("%s accuracy gate vs the fp32 variant on %d held-out utterances (%s)", precision,
             sum(len(b[0]) for b in batches), data["label"])
    fp32 = manifest.safe_path(manifest.variant("fp32")["file"])
    result = evaluate(precision, manifest.head, config, ort_runner(fp32),
                      variant_runner(manifest.safe_path(variant["file"]), precision, backend), batches, limits=limits)
    if not result.passed:
        raise GateError(f"{result.report()}\n{precision} of {manifest.root} fails its accuracy gate"
                        + (f" (at export: {_figures(recorded['metrics'])})" if same else ""))
    return result.rows(recorded.get("metrics") if same else None)


def _gate_path(recorded, given, precision: str):
    """The gate data to use: `given`, else the recorded path (None: the bundled samples)."""
    if given is not None:
        return given
    if isinstance(recorded, str):  # schema-1 manifests from before the gate-data record: a label or a path
        recorded = {"path": None if recorded.startswith("bundled") else recorded, "label": recorded}
    path = (recorded or {}).get("path")
    if path is not None and not Path(path).exists():
        raise InputError(f"the {precision} gate was judged on {path} at export, which is not here; pass "
                         "--gate-data PATH (the same data reproduces the recorded figures)")
    return path


def _warn_other_kernel(manifest, precision: str) -> None:
    from .machine import machine

    exported = (manifest.data.get("machine") or {}).get("int8_kernel")
    here = machine()["int8_kernel"]
    if precision.startswith("int8") and exported and exported != here:
        log.warning("%s was exported where onnxruntime's int8 kernel is %s; here it is %s: int8 figures "
                    "differ between them (benchmarks/results/int8-formats.md)", precision, exported, here)


def _figures(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.6g}" for k, v in metrics.items() if k not in ("finite", "max_abs", "mean_abs"))


def _parity(manifest, model, variant, path: Path, precision: str, frames) -> list[OutputDiff]:
    if variant.get("frontend"):
        from runtime.features import FeatureExtractor
        from runtime.shapes import min_samples

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

    session = Session(artifact, precision=precision, provider="trt-engine")  # checks sha256, loads the plan
    profile = manifest.data["engines"][precision]["profile"]
    low, high = profile["min_frames"], profile["max_frames"]
    frames = sorted({low, min(high, 2 * low + 1)})
    model = _reference(manifest, source)
    log.info("parity of the %s TensorRT engine vs the PyTorch reference at %s frames", precision, frames)
    return backend_parity(model, session.run, manifest.data["min_frames"], f"engine-{precision}", frames,
                          f"model.{precision}.plan")


def verify_sherpa(artifact: str | Path, source: str | None = None, gate_data=None, gates=None) -> list:
    """The sherpa-onnx export of an artifact: its graph vs the reference (the export's parity check),
    and model.int8.onnx's gate re-run on the recorded data and thresholds. Files: manifest.verify()."""
    from .steps.sherpa import gate_batches, sherpa_parity
    from .targets.sherpa_onnx import read_model_type, sherpa_runner

    manifest = load_manifest(artifact)
    entry = manifest.data.get("sherpa_onnx")
    if not entry:
        raise ArtifactError(f"{manifest.root} has no sherpa-onnx export (w2vbert export ... --sherpa-onnx)")
    model_path = manifest.safe_path(entry["model"])
    read_model_type(model_path)
    log.info("parity of %s vs the numpy front end + PyTorch reference", entry["model"])
    rows = sherpa_parity(_reference(manifest, source), model_path, manifest.data["preprocessor"],
                         manifest.data["min_frames"])
    if entry.get("int8"):
        recorded = entry["int8"]["gate"]
        path = _gate_path(entry["int8"].get("gate_data"), gate_data, "sherpa-onnx int8")
        from runtime.features import FeatureExtractor

        raw = FeatureExtractor.from_params({**manifest.data["preprocessor"], "do_normalize_per_mel_bins": False})
        limits = with_overrides(recorded["thresholds"], "int8", gates, manifest.head)
        result = evaluate("int8", manifest.head, manifest.config, sherpa_runner(model_path),
                          sherpa_runner(manifest.safe_path(entry["int8"]["file"])),
                          gate_batches(path, raw, manifest.data["min_frames"]), limits=limits)
        if not result.passed:
            raise GateError(f"{result.report()}\nsherpa-onnx model.int8.onnx of {manifest.root} fails its gate")
        rows += result.rows(recorded.get("metrics"))
    return rows
