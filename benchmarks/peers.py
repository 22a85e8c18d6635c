"""The other engines people run this model on: OpenVINO and CTranslate2.

* OpenVINO (Intel's CPU runtime) compiles ONNX files itself. It is timed on what users have
  today (the plain ``torch.onnx.export``) and on our standard-op graphs (``--target tensorrt``
  fp32 and int8-qdq: no onnxruntime-only operators, so nothing is lost in translation). Its CPU
  plugin runs an fp32 graph in bf16 by default where the CPU has bf16 units, so every row sets
  ``INFERENCE_PRECISION_HINT=f32``; on such CPUs a second row per graph keeps OpenVINO's default
  (what a user gets without setting anything). Each row is labelled with the precision the
  compiled model reports it runs.
* CTranslate2 has a native Wav2Vec2-BERT encoder. Its converter (``ct2-transformers-converter``)
  takes only a ``Wav2Vec2BertForCTC`` checkpoint with a tokenizer (and its engine needs an adapter
  layer), so a CTC checkpoint is converted as it is (logits compared) and any other head's encoder
  under a 32-token CTC head with ``return_hidden`` (hidden states compared). When the converter or
  the engine fails, the row says why (benchmarks.run reports it among the skipped backends with the
  error).

Both are in the ``bench`` extra; without them their rows are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("w2vbert")
CT2_TYPES = ("float32", "int8")
OPENVINO_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # OpenVINO's type names -> ours
PEER_DISTRIBUTIONS = ("openvino", "ctranslate2")  # their versions go into the benchmark's record
STANDARD_GRAPHS = "artifact-tensorrt"  # under the work dir: our --target tensorrt export, for OpenVINO


def installed(module: str) -> bool:
    """Whether `module` can be imported here (without importing it): a backend's availability."""
    return importlib.util.find_spec(module) is not None


def plan_peers(checkpoint: str | None, work: Path, int8: bool) -> tuple[list[dict], list[tuple[str, str]]]:
    """-> (specs, skipped) for OpenVINO and CTranslate2. The files they read are built afterwards, for
    the selected ones only (benchmarks.run)."""
    specs, skipped = [], []
    if not installed("openvino"):
        skipped.append(("OpenVINO", "openvino not installed (pip install 'w2vbert-deploy[bench]')"))
    elif checkpoint is not None:
        hints = ("f32", None) if openvino_default_precision() != "f32" else ("f32",)
        graphs = [("OpenVINO on plain export", str(work / "plain" / "model.onnx"), "fp32")]
        ours = ("fp32", "int8-qdq") if int8 else ("fp32",)
        graphs += [(f"OpenVINO on ours {p} (tensorrt graph)", str(work / STANDARD_GRAPHS / f"model.{p}.onnx"), p)
                   for p in ours]
        for hint in hints:
            for name, path, precision in graphs:
                spec = {"name": name if hint else f"{name}, default hint", "kind": "openvino", "path": path,
                        "hint": hint}
                specs.append(spec if path.endswith("plain/model.onnx") else {**spec, "precision": precision})
    if not installed("ctranslate2"):
        skipped.append(("CTranslate2", "ctranslate2 not installed (pip install 'w2vbert-deploy[bench]')"))
    elif checkpoint is None:
        skipped.append(("CTranslate2", "no checkpoint to convert"))
    else:
        for compute in CT2_TYPES if int8 else CT2_TYPES[:1]:
            specs.append({"name": f"CTranslate2 {compute}", "kind": "ctranslate2", "source": checkpoint,
                          "path": str(work / f"ct2-{compute}"), "compute_type": compute,
                          "precision": "int8" if compute == "int8" else "fp32"})
    return specs, skipped


def prepare_ctranslate2(spec: dict) -> str | None:
    """Convert the checkpoint's CTC twin with CTranslate2's own converter; None or why it failed."""
    out = Path(spec["path"])
    if (out / "model.bin").is_file():
        return None
    twin = out.parent / "ct2-source"
    if not (twin / "vocab.json").is_file():
        done = subprocess.run([sys.executable, "-c", f"from benchmarks.peers import ctc_twin; "
                               f"ctc_twin({spec['source']!r}, {str(twin)!r})"],
                              capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[1]))
        if done.returncode != 0:
            return f"building its CTC twin failed: {_last_line(done.stderr)}"
    converter = Path(sys.executable).with_name("ct2-transformers-converter")
    done = subprocess.run([str(converter), "--model", str(twin), "--output_dir", str(out),
                           "--quantization", spec["compute_type"]], capture_output=True, text=True)
    if done.returncode != 0:
        return f"ct2-transformers-converter failed: {_last_line(done.stderr)}"
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def ctc_twin(checkpoint: str, out: str) -> None:
    """What the converter reads: a CTC checkpoint as it is (CTranslate2 then answers its logits, as
    every other backend does), or another head's encoder under a Wav2Vec2BertForCTC head with
    `return_hidden` (CTranslate2 then answers the hidden states, as the others do); with a vocabulary."""
    import shutil

    import transformers

    from exporter.model.config import W2VBertConfig

    source = Path(checkpoint)
    config = W2VBertConfig.from_json_file(source / "config.json")
    ctc = config.default_head == "CTC"
    model = transformers.Wav2Vec2BertForCTC.from_pretrained(checkpoint, **({} if ctc else {"vocab_size": 32}))
    model.config.return_hidden = not ctc
    model.save_pretrained(out)
    if (source / "vocab.json").is_file():
        shutil.copy(source / "vocab.json", Path(out, "vocab.json"))
    else:
        Path(out, "vocab.json").write_text(json.dumps(character_vocabulary(model.config.vocab_size)))


def character_vocabulary(size: int) -> dict[str, int]:
    """A character CTC vocabulary of exactly `size` tokens (the converter checks it against the head)."""
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|", "'", *(chr(97 + i) for i in range(26))]
    tokens += [f"<extra_{i}>" for i in range(size - len(tokens))]
    return {token: index for index, token in enumerate(tokens[:size])}


def openvino_default_precision() -> str:
    """The precision OpenVINO's CPU plugin runs fp32 graphs in when nothing is set: "bf16" on CPUs with
    bf16 units (AMX, AVX512_BF16), "f32" elsewhere."""
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


class OpenVINORunner:
    """A compiled OpenVINO model as a benchmark backend; `facts` says what it really runs."""

    def __init__(self, spec: dict, threads: int):
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if spec.get("hint"):  # None: OpenVINO's default, what a user gets without setting anything
            config["INFERENCE_PRECISION_HINT"] = spec["hint"]
        compiled = ov.Core().compile_model(spec["path"], "CPU", config)
        ran = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.facts = {"inference_precision": OPENVINO_PRECISIONS.get(ran, ran), "label": f"{spec['name']} [{ran}]"}
        self.request = compiled.create_infer_request()
        self.first = compiled.outputs[0]

    def __call__(self, features, mask):
        self.request.infer({"input_features": features, "attention_mask": mask})
        return self.request.get_tensor(self.first).data.copy()


def build_openvino(spec: dict, threads: int):
    return OpenVINORunner(spec, threads)


def build_ctranslate2(spec: dict, threads: int):
    import ctranslate2

    model = ctranslate2.models.Wav2Vec2Bert(spec["path"], device="cpu", compute_type=spec["compute_type"],
                                            intra_threads=threads)

    def run(features, mask):
        # CTranslate2 takes no mask: the benchmark's inputs are unpadded (every mask is all ones)
        if not mask.all():
            raise ValueError("CTranslate2's encoder takes no attention mask; padded batches are not comparable")
        return np.asarray(model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True))
    return run
