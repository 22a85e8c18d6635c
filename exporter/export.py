"""`w2vbert export` as a job: plan -> load -> stage -> steps in order -> finish.

Each step adds one entry to the manifest in the staging directory; nothing reaches OUT
until every step passed (exporter.artifact swaps the staging directory into place).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import artifact
from .model.checkpoint import load_resolved
from .model.registry import HEADS
from .model.sources import SIDE_FILES
from .parity.reference import onnx_parity, parity_record
from .plan import DEFAULT_OPSET, TritonPlan, make_plan
from .steps.cpu_form import add_cpu_form
from .steps.engines import add_engines
from .steps.fp32 import add_fp32
from .steps.frontend import add_frontend_variant
from .steps.precisions import QuantOptions, add_precision_variants
from .steps.sherpa import add_sherpa
from .targets.triton import write_repository

log = logging.getLogger("w2vbert")


def export(source=None, out: str | Path = "w2vbert-artifact", head: str | None = None,
           opset: int = DEFAULT_OPSET, precisions=("fp32",), force: bool = False,
           with_frontend: bool = False, target: str = "ort", quant=None, engine=None,
           engine_cache: Path | None = None, triton: TritonPlan | None = None, sherpa_onnx: bool = False) -> Path:
    """Export `source` (checkpoint dir, preset name, or the bundled default) to an artifact at `out`.

    `target` "ort" emits com.microsoft MultiHeadAttention; "tensorrt" keeps standard ONNX ops.
    For "ort", fp32 also gets `model.fp32.cpu.onnx` (exporter.steps.cpu_form: no
    SkipLayerNormalization, for the CPU provider; it shares the weight file above 2 GB and
    embeds a copy below). `with_frontend` also writes `model.fp32.frontend.onnx` (+ its CPU
    form), whose inputs are raw samples. `precisions`: fp32 is always built (the others are
    made from it and gated against it); `quant` (steps.precisions.QuantOptions) sets
    calibration, gate data, thresholds and --keep-fp32. `engine` (keyword arguments of
    runtime.trt_profile.ShapeProfile.from_seconds): also build TensorRT plans (target
    tensorrt): fp32 -> fp32 plan, fp16 -> fp16 plan, int8-qdq -> int8 plan. `triton`: also write a
    Triton model repository from the finished artifact (checked before any work). `sherpa_onnx`:
    also write OUT/sherpa-onnx/ (CTC heads; exporter.steps.sherpa).
    """
    plan = make_plan(source, out, head, opset, precisions, force, with_frontend, target, engine, engine_cache,
                     triton, sherpa_onnx)
    started = time.perf_counter()
    log.info("loading %s", plan.source.path or plan.source.name)
    model = load_resolved(plan.source, plan.head, plan.config)
    preprocessor = artifact.preprocessor_params(plan.source.path)
    with artifact.staged_output(plan.out) as staging:
        side = artifact.copy_side_files(plan.source.path, staging, SIDE_FILES)
        if HEADS[plan.head].transcripts and "vocab.json" not in side:
            log.warning("the %s checkpoint has no vocab.json: `w2vbert transcribe` and Session.transcribe cannot "
                        "turn its logits into text; put the tokenizer files (vocab.json, tokenizer_config.json) "
                        "beside config.json and export again", plan.head)
        manifest = artifact.build_manifest(plan.config, plan.head, plan.source.label, plan.opset, preprocessor, {},
                                           side)
        fp32 = add_fp32(model, staging, manifest, plan.opset, plan.target)
        if plan.target == "ort":
            add_cpu_form(staging, fp32, plan.target, lambda path: _fp32_parity(model, path, manifest))
        if plan.with_frontend:
            add_frontend_variant(model, staging, manifest, plan.opset, plan.target)
        add_precision_variants(staging, manifest, plan.precisions, plan.target, quant or QuantOptions())
        if plan.sherpa_onnx:
            add_sherpa(model, staging, manifest, plan.opset, plan.precisions, quant or QuantOptions())
        if plan.profile is not None:
            add_engines(staging, manifest, plan.engine_precisions, plan.profile, plan.engine_cache)
        artifact.finish_manifest(staging, manifest)
    log.info("wrote %s in %.1f s", plan.out, time.perf_counter() - started)
    if plan.triton is not None:
        t = plan.triton
        for folder in write_repository(plan.out, t.repo, name=t.name, gpu=t.gpu, max_batch=t.max_batch,
                                       force=plan.force):
            log.info("triton model %s", folder)
    return plan.out


def _fp32_parity(model, path: Path, manifest: dict) -> dict:
    return parity_record(onnx_parity(model, path, manifest["min_frames"]))
