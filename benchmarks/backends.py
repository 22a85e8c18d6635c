"""Backends the benchmark compares; each is built inside its own worker process.

A backend spec is a small JSON-able dict; `build(spec, threads)` returns a
callable ``run(features, mask)``. Availability is decided up front by
`plan_backends`, so a skipped backend always comes with its reason.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from exporter.model.registry import HEADS
from runtime.precisions import engines_of

from .peers import installed

log = logging.getLogger("w2vbert")


def plan_backends(source: str | None, artifact: Path, work_dir: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """-> (backend specs to run, [(name, reason)] skipped)."""
    from runtime.manifest import load_manifest

    manifest = load_manifest(artifact)
    specs, skipped = [], []
    if not installed("torch"):
        skipped += [("transformers eager", "torch not installed"), ("reference eager", "torch not installed"),
                    ("plain export", "torch not installed")]
    else:
        if installed("transformers"):
            specs.append({"name": "transformers eager", "kind": "transformers", "source": source})
            specs.append({"name": "plain export (ORT)", "kind": "plain-export", "source": source,
                          "path": str(work_dir / "plain" / "model.onnx")})
            if any(p.startswith("int") for p in manifest.data["variants"]):
                # What users try next: quantize_dynamic with its defaults on that export.
                specs.append({"name": "plain export + quantize_dynamic", "kind": "plain-export", "source": source,
                              "path": str(work_dir / "plain-int8" / "model.onnx"),
                              "quantize_from": str(work_dir / "plain" / "model.onnx")})
        else:
            skipped += [("transformers eager", "transformers not installed (pip install transformers)"),
                        ("plain export", "needs transformers to build the model users export today")]
        specs.append({"name": "reference eager", "kind": "reference", "source": source})
    for precision, variant in manifest.data["variants"].items():
        if variant.get("frontend"):
            skipped.append((f"ours {precision}", "raw-audio variant: same graph as fp32 plus the front end"))
            continue
        engines = engines_of(precision)
        if "onnxruntime" in engines:
            specs.append({"name": f"ours {precision} ({variant.get('target', 'ort')})", "kind": "session",
                          "artifact": str(artifact), "precision": precision, "provider": "cpu"})
        if "openvino" in engines:
            if installed("openvino"):
                specs.append({"name": f"ours {precision} (OpenVINO)", "kind": "session", "artifact": str(artifact),
                              "precision": precision, "provider": "openvino"})
            else:
                skipped.append((f"ours {precision} (OpenVINO)", "openvino not installed (pip install "
                                "'w2vbert-deploy[openvino]')"))
    skipped += gpu_skips()
    return specs, skipped


def gpu_skips() -> list[tuple[str, str]]:
    try:
        import onnxruntime as ort
        providers = ort.get_available_providers()
    except ImportError:
        providers = []
    out = []
    if "CUDAExecutionProvider" not in providers:
        out.append(("ORT CUDA", "no CUDAExecutionProvider (needs the gpu extra and an NVIDIA GPU)"))
    if "TensorrtExecutionProvider" not in providers:
        out.append(("ORT TensorRT / TensorRT engine", "no TensorRT provider (needs the gpu extra and a GPU)"))
    return out


def build(spec: dict, threads: int):
    """Load the backend described by `spec`; returns run(features, mask) -> outputs."""
    kind = spec["kind"]
    if kind in ("openvino", "ctranslate2"):
        from . import peers

        return (peers.build_openvino if kind == "openvino" else peers.build_ctranslate2)(spec, threads)
    if kind == "session":
        from runtime import Session

        session = Session(spec["artifact"], precision=spec["precision"], provider=spec["provider"],
                          threads=threads, verify=False, spin=spec.get("spin", False))
        return session.run
    if kind == "plain-export":  # prepared before the run (prepare): no torch here, so RSS is onnxruntime's
        return _ort_runner(Path(spec["path"]), threads, spec.get("spin", False))
    import torch

    torch.set_num_threads(threads)
    if kind == "reference":
        from exporter.model.checkpoint import load_model

        return _torch_runner(load_model(spec["source"]))
    if kind == "transformers":
        return _torch_runner(transformers_model(spec["source"]), hf=True)
    raise ValueError(f"unknown backend kind {kind!r}")


def prepare(spec: dict) -> None:
    """Write the files a plain-export backend loads: what users do today (`torch.onnx.export` of the
    transformers model; with `quantize_from`, onnxruntime's quantize_dynamic of that export)."""
    if spec["kind"] != "plain-export":
        raise ValueError(f"backend kind {spec['kind']!r} has nothing to prepare")
    if spec.get("quantize_from"):
        quantize_plain(Path(spec["quantize_from"]), Path(spec["path"]))
    else:
        export_plain(transformers_model(spec["source"]), Path(spec["path"]))


def _torch_runner(model, hf: bool = False):
    import torch

    def run(features, mask):
        with torch.inference_mode():
            if hf:
                return model(input_features=torch.from_numpy(features), attention_mask=torch.from_numpy(mask))
            return model(torch.from_numpy(features), torch.from_numpy(mask))
    return run


def transformers_model(checkpoint: str):
    """transformers' model of a checkpoint dir (the harness writes presets to one first)."""
    import transformers

    from exporter.model.config import W2VBertConfig

    head = W2VBertConfig.from_json_file(Path(checkpoint) / "config.json").default_head
    return getattr(transformers, HEADS[head].architecture).from_pretrained(checkpoint).eval()


def materialize(source: str | None, folder: Path) -> str:
    """A checkpoint dir for `source`: presets are written once, so every backend loads the same
    weights from disk and no worker's memory figure includes building another model."""
    from exporter.model.checkpoint import load_model
    from exporter.model.sources import resolve_source

    resolved = resolve_source(source)
    if resolved.kind == "dir":
        return str(resolved.path)
    if (folder / "model.safetensors").is_file():
        return str(folder)
    from safetensors.torch import save_file

    model = load_model(source)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    config = model.config.to_dict()
    config["architectures"] = [HEADS[model.head].architecture]
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return str(folder)


def export_plain(model, path: Path) -> None:
    """What users do today: torch.onnx.export of the transformers model with dynamic axes."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, 64, model.config.feature_projection_input_dim)
    mask = torch.ones(1, 64, dtype=torch.int64)
    axes = {"input_features": {0: "batch", 1: "frames"}, "attention_mask": {0: "batch", 1: "frames"}}
    with torch.no_grad():
        torch.onnx.export(model, (x, mask), str(path), input_names=["input_features", "attention_mask"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)


def quantize_plain(src: Path, dst: Path) -> None:
    """onnxruntime's quantize_dynamic with default arguments (int8 weights, per tensor)."""
    from onnxruntime.quantization import quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst), use_external_data_format=True)


def _ort_runner(path: Path, threads: int, spin: bool = False):
    """onnxruntime with default settings (but for the thread count and, unless `spin`, no spin-waiting)."""
    from runtime.ort_session import ort_session

    session = ort_session(path, threads=threads, spin=spin)

    def run(features, mask):
        return session.run(None, {"input_features": features, "attention_mask": mask})
    return run


def file_size(spec: dict) -> int | None:
    """Bytes of the model files a backend loads (None for in-memory PyTorch models)."""
    from runtime.manifest import MANIFEST_NAME, load_manifest

    kind, path = spec["kind"], Path(spec.get("path", ""))
    if kind == "session":
        manifest = load_manifest(spec["artifact"])
        return _bytes(manifest, manifest.form(spec["precision"], spec["provider"])["files"])
    if kind == "openvino" and (path.parent / MANIFEST_NAME).is_file():  # one variant of our artifact
        manifest = load_manifest(path.parent)
        variant = next(v for v in manifest.data["variants"].values() if v["file"] == path.name)
        return _bytes(manifest, variant["files"])
    if kind in ("plain-export", "openvino"):  # torch.onnx.export wrote one file per weight beside the graph
        return _folder_bytes(path.parent)
    if kind == "ctranslate2":
        return _folder_bytes(path)
    return None


def _bytes(manifest, files: list[str]) -> int:
    return sum(manifest.data["files"][f]["bytes"] for f in files)


def _folder_bytes(folder: Path) -> int | None:
    return sum(os.path.getsize(p) for p in folder.iterdir()) if folder.is_dir() else None


def first_output(outputs) -> np.ndarray:
    """The first output of any backend's answer (dict, list, ModelOutput, array, torch tensor) as numpy."""
    if isinstance(outputs, dict) or hasattr(outputs, "to_tuple"):
        outputs = next(iter(outputs.values()))
    elif isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    if hasattr(outputs, "detach"):
        outputs = outputs.detach().numpy()
    return np.asarray(outputs)
