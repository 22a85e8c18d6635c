"""A Triton Inference Server model repository from an artifact.

    DIR/<name>_<precision>/config.pbtxt
    DIR/<name>_<precision>/1/model.onnx (+ its external data file)   backend onnxruntime
    DIR/<name>_<precision>_trt/1/model.plan                           backend tensorrt
    DIR/<name>_audio/1/model.py (+ 1/artifact/)                       backend python: raw audio in

Dims exclude the batch axis (max_batch_size > 0) and are -1 where the model is dynamic.
Dynamic batching only merges feature requests whose shapes are equal; the audio model's input is
ragged, so audio of any length shares a batch (exporter.targets.triton_python). The text follows
Triton's ModelConfig protobuf schema; the tests parse it with tritonclient's model_config_pb2.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from runtime.errors import ExportError, OptionError
from runtime.manifest import load_manifest
from runtime.precisions import PRECISIONS
from runtime.providers import profile_shape_strings
from runtime.trt_profile import FRAMES_PER_SECOND, ShapeProfile, engine_profile

from ..plan import triton_model_name
from .triton_python import default_max_audio_seconds, link_artifact, python_model_config, write_python_model

log = logging.getLogger("w2vbert")

DTYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "float16": "TYPE_FP16", "int32": "TYPE_INT32"}


def _tensor(spec: dict) -> str:
    dims = ["-1" if isinstance(d, str) else str(d) for d in spec["shape"][1:]]  # batch axis implied
    return (f'  {{\n    name: "{spec["name"]}"\n    data_type: {DTYPES[spec["dtype"]]}\n'
            f'    dims: [ {", ".join(dims)} ]\n  }}')


def model_config(name: str, manifest: dict, backend: str, max_batch: int, instance: str, count: int = 1,
                 precision: str = "fp32", threads: int | None = None, trt_profile: dict | None = None) -> str:
    """config.pbtxt text for one model of the repository; `trt_profile` (a ShapeProfile dict) bounds the
    engines of the TensorRT accelerator that GPU instances of ONNX models get."""
    inputs, outputs = manifest["inputs"], manifest["outputs"]
    preferred = sorted({b for b in (max(1, max_batch // 2), max_batch) if b >= 1})
    lines = [f'name: "{name}"',
             'backend: "onnxruntime"' if backend == "onnxruntime" else 'platform: "tensorrt_plan"',
             f"max_batch_size: {max_batch}",
             "input [\n" + ",\n".join(_tensor(s) for s in inputs) + "\n]",
             "output [\n" + ",\n".join(_tensor(s) for s in outputs) + "\n]",
             "dynamic_batching {\n"
             f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
             "  max_queue_delay_microseconds: 5000\n}",
             f"instance_group [\n  {{\n    count: {count}\n    kind: {instance}\n  }}\n]"]
    mode = PRECISIONS[precision].triton_mode if precision in PRECISIONS else None
    if backend == "onnxruntime" and instance == "KIND_GPU" and mode:
        lines.append(_tensorrt_accelerator(name, precision, trt_profile, manifest))
    if backend == "onnxruntime" and threads:
        lines.append(f'parameters {{\n  key: "intra_op_thread_count"\n  value: {{ string_value: "{threads}" }}\n}}')
    return "\n".join(lines) + "\n"


def _tensorrt_accelerator(name: str, precision: str, profile: dict | None, manifest: dict) -> str:
    """ORT's TensorRT provider on GPU instances (it falls back to CUDA for the rest). The parameter names
    are those Triton's onnxruntime backend passes through (its src/onnxruntime.cc; the trt_* keys since
    its PR #237, March 2024). Without the caches every instance load rebuilds the engines (minutes for
    600M); without a profile ORT builds one per new shape range as requests arrive."""
    params = {"precision_mode": PRECISIONS[precision].triton_mode, "max_workspace_size_bytes": "4294967296",
              "trt_engine_cache_enable": "1", "trt_engine_cache_path": f"/tmp/w2vbert-trt-cache/{name}",
              "trt_timing_cache_enable": "1", "trt_timing_cache_path": f"/tmp/w2vbert-trt-cache/{name}"}
    if profile:
        feature_dim = manifest["inputs"][0]["shape"][-1]
        for which, shapes in profile_shape_strings(profile, feature_dim).items():
            params[f"trt_profile_{which}_shapes"] = shapes
    body = "".join(f'        parameters {{ key: "{k}" value: "{v}" }}\n' for k, v in params.items())
    bounds = ""
    if profile:
        seconds = (f"{profile['min_frames'] / FRAMES_PER_SECOND:g}-"
                   f"{profile['max_frames'] / FRAMES_PER_SECOND:g} s")
        bounds = (f"# TensorRT accelerator profile: batch <= {profile['max_batch']}, {profile['min_frames']}..."
                  f"{profile['max_frames']} frames ({seconds}); longer audio needs an export with a larger "
                  "--max-seconds\n")
    return (bounds + "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n      {\n"
            f'        name: "tensorrt"\n{body}      }}\n    ]\n  }}\n}}')


def accelerator_profile(manifest: dict, precision: str, max_batch: int) -> dict:
    """The accelerator's profile: batch up to the model's max_batch_size; frames as the artifact's plan of
    this variant was built (its --min/--max-seconds), else the export defaults (1 s to 30 s)."""
    frames = (engine_profile(manifest, precision)
              or ShapeProfile.from_seconds(model_min_frames=manifest.get("min_frames", 1)).to_dict())
    return ShapeProfile(1, max_batch, max_batch, frames["min_frames"], frames["opt_frames"],
                        frames["max_frames"]).to_dict()


def _place(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # large weights: no second copy when on one filesystem
    except OSError:
        shutil.copyfile(source, target)


def write_repository(artifact: str | Path, repo: str | Path, name: str | None = None, gpu: bool = False,
                     max_batch: int = 8, threads: int | None = None, force: bool = False) -> list[Path]:
    """One Triton model per ONNX variant (and per TensorRT plan) of `artifact`, and `<name>_audio`
    (Python backend: raw audio in, results out, fp32, with the files it reads inside); returns model dirs.

    A model folder that exists is replaced only with `force` and only when it holds a config.pbtxt
    (one written by us); every folder is checked before any is written."""
    manifest = load_manifest(artifact)
    data = manifest.data
    name = name or f"w2vbert_{data['head'].lower()}"
    repo = Path(repo)
    variants = [p for p, v in data["variants"].items() if not v.get("frontend")]  # raw audio: other inputs
    folders = [repo / triton_model_name(name, p) for p in variants]
    folders += [repo / f"{name}_{p}_trt" for p in data.get("engines", {})] + [repo / f"{name}_audio"]
    for folder in folders:
        _check_replaceable(folder, force)
    written = [_onnx_model(manifest, repo / triton_model_name(name, p), p, gpu, max_batch, threads) for p in variants]
    written += [_plan_model(manifest, repo / f"{name}_{p}_trt", p, max_batch) for p in data.get("engines", {})]
    written.append(_audio_model(manifest, repo / f"{name}_audio", max_batch, threads))
    log.info("wrote %d Triton model(s) to %s", len(written), repo)
    return written


def _onnx_model(manifest, folder: Path, precision: str, gpu: bool, max_batch: int, threads) -> Path:
    _fresh(folder)
    form = manifest.form(precision, "cuda" if gpu else "cpu")
    for file in form["files"]:
        target = "model.onnx" if file == form["file"] else file  # the data file keeps its name
        _place(manifest.safe_path(file), folder / "1" / target)
    instance = "KIND_GPU" if gpu else "KIND_CPU"
    profile = accelerator_profile(manifest.data, precision, max_batch) if gpu else None
    (folder / "config.pbtxt").write_text(model_config(folder.name, manifest.data, "onnxruntime", max_batch, instance,
                                                      precision=precision, threads=threads, trt_profile=profile))
    return folder


def _plan_model(manifest, folder: Path, precision: str, max_batch: int) -> Path:
    _fresh(folder)
    engine = manifest.data["engines"][precision]
    _place(manifest.safe_path(engine["file"]), folder / "1" / "model.plan")
    batch = min(max_batch, engine["profile"]["max_batch"])
    # A plan loads only in the TensorRT version (and on the GPU architecture) it was built with.
    needs = (f"# model.plan: TensorRT {engine.get('tensorrt')}, built on {engine.get('gpu')} "
             f"(sm {engine.get('compute_capability')}); the server's TensorRT must be the same version\n")
    (folder / "config.pbtxt").write_text(needs + model_config(folder.name, manifest.data, "tensorrt", batch,
                                                              "KIND_GPU", precision=precision))
    return folder


def _audio_model(manifest, folder: Path, max_batch: int, threads) -> Path:
    """The audio model carries the fp32 files it reads (hard links), so the repository moves as one."""
    _fresh(folder)
    link_artifact(manifest, "fp32", folder / "1" / "artifact")
    params = {"artifact": "artifact", "precision": "fp32", "threads": threads,
              "max_audio_seconds": default_max_audio_seconds(manifest.config), "batch_size": max_batch}
    return write_python_model(folder, python_model_config(folder.name, "audio", manifest, params, max_batch))


def _check_replaceable(folder: Path, force: bool) -> None:
    if not folder.exists():
        return
    if not (folder / "config.pbtxt").is_file():
        raise ExportError(f"{folder} exists and is not a Triton model written by w2vbert; refusing to replace it")
    if not force:
        raise OptionError(f"{folder} already exists; pass force=True (--force) to replace it")


def _fresh(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "1").mkdir(parents=True)
