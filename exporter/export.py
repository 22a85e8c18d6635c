"""torch -> ONNX: trace, consolidate weights, check, verify parity, write the artifact.

Exporter choice: the TorchScript-based ``torch.onnx.export(dynamo=False)``. Its
known failure on this model -- a rotary sequence length baked into the graph --
comes from transformers' Python-side cache, which our reference model does not
have: every shape is read from a tensor, so the traced graph is dynamic in batch
and frames (the parity check below runs at lengths unlike the trace length to
prove it). The dynamo exporter also produces correct graphs from our model, but
takes ~20x longer (7-10 s vs 0.4 s for a 2-layer model) and needs onnxscript.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from runtime.errors import ExportError

from . import artifact
from .checkpoint import SIDE_FILES, load_model, resolve_source
from .heads import OUTPUT_NAMES
from .parity import OutputDiff, assert_close, keep_worst, ort_runner

log = logging.getLogger("w2vbert")

DEFAULT_OPSET = 17
TRACE_FRAMES = 64
PARITY_FRAMES = (37, 101)  # both unlike TRACE_FRAMES: proves the frames axis is dynamic
PROTOBUF_LIMIT = 2 * 1024 ** 3
ENGINE_FOR = {"fp32": "fp32", "fp16": "fp16", "int8-qdq": "int8"}  # ONNX precision -> TensorRT plan


def example_batch(frames: int, feature_dim: int, min_frames: int, seed: int = 0):
    """A right-padded batch of 3: full, ~70% and ~45% of `frames` real frames (>= min_frames)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((3, frames, feature_dim)).astype(np.float32)
    lengths = [frames, max(min_frames, int(frames * 0.7)), max(min_frames, int(frames * 0.45))]
    mask = (np.arange(frames)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    features[mask == 0] = 0.0
    return features, mask


def trace(module: torch.nn.Module, args: tuple, path: Path, opset: int, input_names: list[str],
          output_names: list[str], dynamic: dict) -> None:
    """TorchScript trace with named dynamic axes (external data scattered if > 2 GB; consolidated later)."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on shape reads are expected; parity checks them
            torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc


def output_axes(model: torch.nn.Module, names) -> dict:
    axes = {}
    for name in names:
        axes[name] = {0: "batch"}
        if model.head in ("Model", "CTC", "AudioFrameClassification") and name != "output_lengths":
            axes[name][1] = "output_frames" if model.config.add_adapter else "frames"
    return axes


def trace_to_onnx(model: torch.nn.Module, path: Path, opset: int, min_frames: int, target: str = "ort") -> None:
    """The features-in model: input_features (B, T, 160), attention_mask (B, T), traced for `target`."""
    from .fused import for_target

    model = for_target(model, target)
    features, mask = example_batch(max(TRACE_FRAMES, min_frames), model.config.feature_projection_input_dim,
                                   min_frames)
    names = list(OUTPUT_NAMES[model.head])
    dynamic = {"input_features": {0: "batch", 1: "frames"}, "attention_mask": {0: "batch", 1: "frames"},
               **output_axes(model, names)}
    trace(model, (torch.from_numpy(features), torch.from_numpy(mask)), path, opset,
          ["input_features", "attention_mask"], names, dynamic)


def build_variant(staging: Path, name: str, tracer, metadata: dict[str, str]) -> list[str]:
    """Trace into staging/.raw, consolidate to staging/name, run onnx.checker; returns file names."""
    raw_dir = staging / ".raw"  # inside staging: an interrupted export leaves nothing elsewhere
    raw_dir.mkdir()
    tracer(raw_dir / "model.onnx")
    files = consolidate(raw_dir / "model.onnx", staging / name, metadata)
    shutil.rmtree(raw_dir)
    from .simplify import simplify

    simplify(staging / name, files)
    log.info("checking %s with onnx.checker (full check)", name)
    check_onnx(staging / name)
    return files


def parity_record(rows: list[OutputDiff]) -> dict:
    for row in rows:
        log.info("  %s", row.row())
    return {r.name: {"max_abs": r.max_abs, "max_rel": r.max_rel, "tolerance": r.tolerance} for r in rows}


def consolidate(raw: Path, final: Path, metadata: dict[str, str], replace: bool = False,
                transform=None) -> list[str]:
    """Load the raw export, add metadata, save; weights go to ONE external file when > 2 GB.

    `replace`: drop the model's existing metadata first (a converted variant carries its source's).
    `transform`: a graph rewrite applied to the loaded ModelProto before saving.
    """
    import onnx

    model = onnx.load(str(raw), load_external_data=True)
    if transform is not None:
        transform(model)
    if replace:
        del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    if weights < PROTOBUF_LIMIT - 64 * 1024 ** 2:
        onnx.save_model(model, str(final))
        return [final.name]
    data_name = final.name + ".data"
    onnx.save_model(model, str(final), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    return [final.name, data_name]


def check_onnx(path: Path) -> None:
    """onnx.checker full check (it runs strict shape inference); path-based for external data."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported graph {path.name} fails onnx.checker: {exc}") from exc


def onnx_parity(model: torch.nn.Module, onnx_path: Path, min_frames: int, precision: str = "fp32",
                frames=PARITY_FRAMES, threads: int | None = None) -> list[OutputDiff]:
    """Run the ONNX file with onnxruntime and the reference on padded batches; raise on mismatch."""
    return backend_parity(model, ort_runner(onnx_path, threads), min_frames, precision, frames, onnx_path.name)


def backend_parity(model: torch.nn.Module, run, min_frames: int, precision: str, frames, label: str):
    """Compare run(features, mask) -> outputs with the reference on padded batches of 3; raise on mismatch."""
    worst: dict[str, OutputDiff] = {}
    for n in frames:
        features, mask = example_batch(max(n, min_frames), model.config.feature_projection_input_dim,
                                       min_frames, seed=n)
        with torch.no_grad():
            reference = {k: v.numpy() for k, v in model(torch.from_numpy(features), torch.from_numpy(mask)).items()}
        got = run(features, mask)
        keep_worst(worst, assert_close(reference, got, precision, label=f"{label}, {n} frames, batch 3"))
    return list(worst.values())


def _metadata(config, head: str, manifest: dict) -> dict[str, str]:
    import json

    keys = ("head", "preprocessor", "output_length_formula", "min_frames", "labels", "vocab_file", "inputs",
            "outputs")
    meta = {f"w2vbert.{k}": (manifest[k] if isinstance(manifest[k], str) else json.dumps(manifest[k]))
            for k in keys}
    meta["w2vbert.config"] = json.dumps(config.to_dict())
    meta["w2vbert.schema_version"] = str(manifest["schema_version"])
    return meta


def export(source=None, out: str | Path = "w2vbert-artifact", head: str | None = None,
           opset: int = DEFAULT_OPSET, precisions=("fp32",), force: bool = False,
           with_frontend: bool = False, target: str = "ort", quant=None, engine=None,
           engine_cache: Path | None = None) -> Path:
    """Export `source` (checkpoint dir, preset name, or the bundled default) to an artifact at `out`.

    `target` "ort" emits com.microsoft MultiHeadAttention; "tensorrt" keeps standard ONNX ops.
    For "ort", fp32 also gets `model.fp32.cpu.onnx` (exporter.cpu_form: no SkipLayerNormalization,
    for the CPU provider; it shares the weight file above 2 GB and embeds a copy below).
    `with_frontend` also writes `model.fp32.frontend.onnx` (+ its CPU form), whose inputs are raw samples.
    `precisions`: fp32 is always built (the others are made from it and gated against it);
    `quant` (variants.QuantOptions) sets calibration, gate data, thresholds and --keep-fp32.
    `engine` (keyword arguments of runtime.trt_profile.ShapeProfile.from_seconds): also build
    TensorRT plans (target tensorrt): fp32 -> fp32 plan, fp16 -> fp16 plan, int8-qdq -> int8 plan.
    """
    from .fused import TARGETS
    from .quantize import check_precision
    from .variants import QuantOptions, add_precision_variants

    if target not in TARGETS:
        raise ExportError(f"target {target!r} is unknown; expected one of {', '.join(TARGETS)}")
    for precision in precisions:
        check_precision(precision, target)
    engine_precisions = [ENGINE_FOR[p] for p in precisions if p in ENGINE_FOR]
    if engine is not None:
        if target != "tensorrt":
            raise ExportError("--engine needs --target tensorrt (engines are built from standard-op ONNX)")
        from runtime.errors import require
        from runtime.trt_profile import ShapeProfile

        from .tensorrt import INSTALL_HINT, gpu_identity

        ShapeProfile.from_seconds(**engine)  # a bad profile, no TensorRT or no GPU: fail before the slow part
        require("tensorrt", "gpu", f"building TensorRT engines ({INSTALL_HINT})")
        gpu_identity()
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; LayerNormalization needs opset >= 17")
    out = Path(out)
    if out.exists() and not force:  # fail before the slow part
        raise ExportError(f"output {out} already exists; pass --force to replace it")
    _, checkpoint_dir = resolve_source(source)
    started = time.perf_counter()
    log.info("loading %s", checkpoint_dir or source or "the bundled default model")
    model = load_model(source, head=head)
    config, head = model.config, model.head
    preprocessor = artifact.preprocessor_params(checkpoint_dir)
    with artifact.staged_output(out, force) as staging:
        side = artifact.copy_side_files(checkpoint_dir, staging, SIDE_FILES)
        label = str(checkpoint_dir.resolve()) if checkpoint_dir else (source or "default")
        manifest = artifact.build_manifest(config, head, label, opset,
                                           preprocessor, {}, side)
        name = "model.fp32.onnx"
        log.info("tracing %s head to ONNX (opset %d, target %s)", head, opset, target)
        files = build_variant(staging, name,
                              lambda p: trace_to_onnx(model, p, opset, manifest["min_frames"], target),
                              {**_metadata(config, head, manifest), "w2vbert.target": target})
        if target == "tensorrt":
            from .trt_lint import check as trt_check

            log.info("checking every node against the TensorRT ONNX parser's operator list")
            trt_check(staging / name)
        log.info("parity vs the PyTorch reference at %s frames (batch 3, padded)", list(PARITY_FRAMES))
        rows = onnx_parity(model, staging / name, manifest["min_frames"])
        from .fused import check_fused
        from .fusion_report import fused_op_counts

        fused = fused_op_counts(staging / name, target)
        check_fused(model, fused["graph"], target)
        manifest["variants"]["fp32"] = {"file": name, "files": files, "target": target, "precision": "fp32",
                                        "parity": parity_record(rows), "fused_ops": fused}
        if target == "ort":
            from .cpu_form import add_cpu_form

            add_cpu_form(staging, manifest["variants"]["fp32"], target,
                         lambda path: parity_record(onnx_parity(model, path, manifest["min_frames"])))
        if with_frontend:
            from .export_frontend import add_frontend_variant

            add_frontend_variant(model, staging, manifest, opset, _metadata(config, head, manifest), target)
        add_precision_variants(staging, manifest, precisions, target, quant or QuantOptions())
        if engine is not None:
            from runtime.trt_profile import ShapeProfile

            from .tensorrt import add_engines

            profile = ShapeProfile.from_seconds(**engine, model_min_frames=manifest["min_frames"])
            add_engines(staging, manifest, engine_precisions, profile, engine_cache)
        artifact.finish_manifest(staging, manifest)
    log.info("wrote %s in %.1f s", out, time.perf_counter() - started)
    return out
