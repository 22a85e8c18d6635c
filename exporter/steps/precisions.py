"""Export step after the fp32 variant: build each reduced precision, gate it, record it.

For each precision: convert the checked fp32 file (:mod:`exporter.quantize.convert`), run
both on held-out inputs and apply the accuracy gate (:mod:`exporter.quantize.gates`). A
variant that fails is never recorded as passing: the export stops with the gate report (the
staging directory is discarded, so a previous artifact at OUT stays), unless
`keep_fp32="auto"`, which keeps the most sensitive layers in fp32 until the gate passes
(:mod:`exporter.quantize.sensitivity`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import GateError, OptionError
from runtime.precisions import PRECISIONS

from ..artifact import variant_entry
from ..parity.runners import ort_runner, variant_runner
from ..passes.op_counts import fused_op_counts
from ..quantize import gates, sensitivity
from ..quantize.calibration import BUNDLED_GATE, calibration_feeds, gate_data_record, held_out_batches
from ..quantize.convert import Job, converter_of, quantize, weight_matmuls

log = logging.getLogger("w2vbert")


@dataclass
class QuantOptions:
    calibration: str | None = None  # audio / .npy path for int8-qdq; None: bundled samples 0, 2, 4
    calibrator: str = "percentile"
    gate_data: str | None = None  # held-out audio / .npy; None: bundled samples 1, 3, 5
    gates: dict = field(default_factory=dict)  # gates.parse_overrides(...)
    keep_fp32: str = "none"  # "none" | "auto" | comma-separated substrings of MatMul node names


def add_precision_variants(staging: Path, manifest: dict, precisions, target: str, options: QuantOptions) -> None:
    todo = [p for p in precisions if p != "fp32"]
    if not todo:
        return
    for precision in todo:  # an override the head's gate lacks fails here, before any conversion
        gates.thresholds(precision, manifest["head"], options.gates)
    context = _context(staging, manifest, todo, options)
    for precision in todo:
        if PRECISIONS[precision].shares_fp32:
            manifest["variants"][precision] = _shared_fp32(context, manifest, precision, target, options)
            continue
        name = f"model.{precision}.onnx"
        log.info("building %s (%s)", name, precision)
        result, kept, ranking = _build_gated(context, precision, name, options)
        if not result.passed:
            _discard(staging, name)
            raise GateError(f"{result.report()}\n{precision} is not written. Options: --keep-fp32 auto (mixed "
                            f"precision), other --calibration data, or relax a threshold with --gate "
                            f"{precision}.KEY=VALUE if this loss is acceptable for your task")
        manifest["variants"][precision] = _record(staging, name, precision, target, result, kept, ranking,
                                                  options, context["calibration"])


def _context(staging: Path, manifest: dict, todo, options: QuantOptions) -> dict:
    """What every precision's build and gate share: the fp32 file and runner, gate data, calibration."""
    import onnx

    fp32 = staging / manifest["variants"]["fp32"]["file"]
    config, pre = manifest["config"], manifest["preprocessor"]
    dim, min_frames = config["feature_projection_input_dim"], manifest["min_frames"]
    batches = held_out_batches(options.gate_data, pre, dim, min_frames)
    log.info("accuracy gates on %d held-out utterances (%s)", sum(len(b[0]) for b in batches),
             options.gate_data or BUNDLED_GATE)
    calibrate = any(converter_of(p).needs_calibration for p in todo if not PRECISIONS[p].shares_fp32)
    calibration = calibration_feeds(options.calibration, pre, dim, min_frames) if calibrate else None
    return {"staging": staging, "fp32": fp32, "head": manifest["head"], "config": config, "batches": batches,
            "reference": ort_runner(fp32), "calibration": calibration,
            "names": weight_matmuls(onnx.load(str(fp32), load_external_data=False))}


def _shared_fp32(context: dict, manifest: dict, precision: str, target: str, options: QuantOptions) -> dict:
    """A precision that is fp32's file at another inference precision (bf16 on OpenVINO): gated like the
    others, recorded with fp32's files."""
    fp32 = manifest["variants"]["fp32"]
    log.info("gating %s: %s on OpenVINO", precision, fp32["file"])
    result = gates.evaluate(precision, context["head"], context["config"], context["reference"],
                            variant_runner(context["fp32"], precision), context["batches"], options.gates)
    if not result.passed:
        raise GateError(f"{result.report()}\n{precision} is not recorded. It needs no file: relax a threshold "
                        f"with --gate {precision}.KEY=VALUE if this loss is acceptable, or leave it out")
    log.info("%s", result.report())
    entry = variant_entry(fp32["file"], list(fp32["files"]), target, precision,
                          parity={"scaled_error": result.metrics["scaled_error"],
                                  "tolerance": result.thresholds["max_scaled_error"]},
                          gate=result.record(), kept_fp32=[], fused_ops=fp32.get("fused_ops"),
                          gate_data=gate_data_record(options.gate_data))
    entry["engine"] = "openvino"
    return entry


def _build_gated(context: dict, precision: str, name: str, options: QuantOptions):
    """Convert and gate `precision`; with --keep-fp32 auto, keep layers in fp32 until it passes."""
    staging, names = context["staging"], context["names"]

    def build_and_gate(exclude):
        quantize(context["fp32"], staging / name, precision, exclude=exclude, calibration=context["calibration"],
                 calibrator=options.calibrator)
        return gates.evaluate(precision, context["head"], context["config"], context["reference"],
                              ort_runner(staging / name), context["batches"], options.gates)

    kept = _explicit_keep(options.keep_fp32, names)
    result = build_and_gate(kept)
    ranking = None
    if not result.passed and options.keep_fp32 == "auto":
        log.info("%s", result.report())
        log.info("%s failed its gate: ranking %d layer groups by sensitivity", precision,
                 len(sensitivity.layer_groups(names)))
        ranking = sensitivity.rank(names, build_and_gate)
        result, kept = sensitivity.keep_until_pass(names, ranking, build_and_gate)
    if result.passed:  # a failure's report is the GateError's message: printed once
        log.info("%s", result.report())
    return result, kept, ranking


def _explicit_keep(keep: str, names: list[str]) -> list[str]:
    if keep in ("none", "auto", "", None):
        return []
    patterns = [p.strip() for p in keep.split(",") if p.strip()]
    kept = [n for n in names if any(p in n for p in patterns)]
    unmatched = [p for p in patterns if not any(p in n for n in names)]
    if unmatched:
        raise OptionError(f"--keep-fp32 pattern(s) {unmatched} match no weight MatMul; names look like "
                          f"{names[0]!r}")
    return kept


def _discard(staging: Path, name: str) -> None:
    for path in (staging / name, staging / (name + ".data")):
        path.unlink(missing_ok=True)


def _record(staging: Path, name: str, precision: str, target: str, result, kept, ranking, options,
            calibration) -> dict:
    files = [name] + ([name + ".data"] if (staging / (name + ".data")).exists() else [])
    entry = variant_entry(name, files, target, precision,
                          parity={"scaled_error": result.metrics["scaled_error"],
                                  "tolerance": result.thresholds["max_scaled_error"]},
                          gate=result.record(), kept_fp32=kept, fused_ops=fused_op_counts(staging / name, target),
                          gate_data=gate_data_record(options.gate_data))
    entry.update(converter_of(precision).record(Job(calibration=calibration), options))
    if ranking:
        entry["sensitivity"] = [{"group": g, "damage": d} for g, d in ranking]
    return entry
