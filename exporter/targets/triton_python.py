"""Triton Python-backend models of an artifact: the features model and the audio model.

Both run ``runtime.triton_model.TritonPythonModel`` (each model.py is one import line), so a
stock Triton container needs ``pip install 'w2vbert-deploy[cpu]'`` and nothing else; the
`tritonserver` that nvidia-pytriton ships (no onnxruntime backend) runs them too, which is what
`w2vbert serve` does. The audio input is ragged (``allow_ragged_batch``): Triton's dynamic batcher
merges requests of every length, and the model pads them itself.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from runtime.manifest import Manifest

MODEL_PY = '"""w2vbert-deploy model: the code is runtime.triton_model (pip install \'w2vbert-deploy[cpu]\')."""\n' \
           "from runtime.triton_model import TritonPythonModel  # noqa: F401\n"
DEFAULT_ATTENTION_BYTES = 4 * 2 ** 30  # runtime.Session's max_attention_bytes default
FRAMES_PER_SECOND = 50


def default_max_audio_seconds(config: dict) -> float:
    """The longest audio one unchunked call may take under the Session's attention-memory guard."""
    frames = math.isqrt(DEFAULT_ATTENTION_BYTES // (4 * int(config["num_attention_heads"])))
    return frames / FRAMES_PER_SECOND


def audio_outputs(head: str, config: dict) -> list[tuple[str, str, list[int]]]:
    """(name, Triton type, dims without the batch axis) of the audio model's outputs."""
    width = config["output_hidden_size"] if config.get("add_adapter") else config["hidden_size"]
    return {
        "CTC": [("text", "TYPE_STRING", [1])],
        "SequenceClassification": [("label", "TYPE_STRING", [1]), ("scores", "TYPE_FP32", [config["num_labels"]])],
        "AudioFrameClassification": [("labels", "TYPE_STRING", [-1])],
        "XVector": [("embeddings", "TYPE_FP32", [config["xvector_output_dim"]])],
        "Model": [("last_hidden_state", "TYPE_FP32", [-1, width])],
    }[head]


def _tensor(name: str, dtype: str, dims, extra: str = "") -> str:
    return (f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ {", ".join(map(str, dims))} ]\n'
            f"{extra}  }}")


def python_model_config(name: str, kind: str, manifest: Manifest, params: dict, max_batch: int = 8,
                        instances: int = 1, queue_delay_ms: float = 5.0) -> str:
    """config.pbtxt of a Python-backend model of `kind` "features" or "audio"."""
    data = manifest.data
    if kind == "features":
        dtypes = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}
        inputs = [_tensor(s["name"], dtypes[s["dtype"]], [-1 if isinstance(d, str) else d for d in s["shape"][1:]],
                          "    optional: true\n" if s["name"] == "attention_mask" else "") for s in data["inputs"]]
        outputs = [_tensor(s["name"], "TYPE_FP32", [-1 if isinstance(d, str) else d for d in s["shape"][1:]])
                   for s in data["outputs"]]
    else:
        inputs = [_tensor("audio", "TYPE_FP32", [-1], "    allow_ragged_batch: true\n    optional: true\n"),
                  _tensor("sampling_rate", "TYPE_INT32", [1], "    optional: true\n")]
        outputs = [_tensor(n, t, d) for n, t, d in audio_outputs(data["head"], data["config"])]
    lines = [f'name: "{name}"', 'backend: "python"', f"max_batch_size: {max_batch}",
             "input [\n" + ",\n".join(inputs) + "\n]", "output [\n" + ",\n".join(outputs) + "\n]"]
    if queue_delay_ms > 0:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(queue_delay_ms * 1000)}\n}}")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]")
    for key, value in {"kind": kind, **params}.items():
        if value is not None:
            lines.append(f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}')
    return "\n".join(lines) + "\n"


def write_python_model(folder: Path, config_text: str) -> Path:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config_text)
    (folder / "1" / "model.py").write_text(MODEL_PY)
    return folder


def link_artifact(manifest: Manifest, precision: str, target: Path) -> None:
    """The files a CPU Session of `precision` reads, hard-linked (or copied) into `target`."""
    form = manifest.form(precision, "cpu")
    side = [n for n in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                        "preprocessor_config.json") if (manifest.root / n).is_file()]
    target.mkdir(parents=True, exist_ok=True)
    for name in ["manifest.json", *side, *form["files"]]:
        try:
            os.link(manifest.safe_path(name), target / name)
        except OSError:
            shutil.copyfile(manifest.safe_path(name), target / name)


@dataclass
class ServeOptions:
    precision: str = "fp32"
    provider: str = "cpu"
    threads: int | None = None
    max_batch: int = 8
    queue_delay_ms: float = 5.0  # 0: no dynamic batching
    instances: int = 1
    max_audio_seconds: float | None = None  # None: the attention-memory guard's length


def serving_repository(artifact: Path, repo: Path, name: str | None, options: ServeOptions) -> tuple[str, str]:
    """The two Python-backend models of `artifact` (read in place) in `repo`: (features name, audio name)."""
    from runtime.errors import OptionError
    from runtime.manifest import load_manifest

    manifest = load_manifest(artifact)
    if options.precision not in manifest.data["variants"] or manifest.variant(options.precision).get("frontend"):
        have = [p for p, v in manifest.data["variants"].items() if not v.get("frontend")]
        raise OptionError(f"--precision {options.precision!r}: {artifact} has no {options.precision} variant to "
                          f"serve; it has {', '.join(have)} (w2vbert export --precision "
                          f"{','.join([*have, options.precision])} adds it)")
    name = name or f"w2vbert_{manifest.head.lower()}"
    limit = options.max_audio_seconds or default_max_audio_seconds(manifest.config)
    common = {"artifact": str(Path(artifact).resolve()), "precision": options.precision,
              "provider": options.provider, "threads": options.threads}
    for kind, model in (("features", name), ("audio", f"{name}_audio")):
        params = {**common, "max_audio_seconds": limit, "batch_size": options.max_batch} if kind == "audio" else common
        write_python_model(repo / model, python_model_config(model, kind, manifest, params, options.max_batch,
                                                             options.instances, options.queue_delay_ms))
    return name, f"{name}_audio"
