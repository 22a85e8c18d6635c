"""Accuracy gates: the one definition of "this reduced precision is good enough".

`w2vbert export` writes a variant only if it passes; `w2vbert verify` re-runs the same
evaluation on the same recorded data and thresholds and reports it beside the figures the
export recorded. Every variant is compared with the fp32 variant of the same artifact on
held-out speech (:func:`exporter.quantize.calibration.held_out_batches`), over real frames only:

* every head: max / mean abs error, the max error scaled by the output's largest
  magnitude (checked against the precision's tolerance in runtime.precisions), and the
  lowest per-utterance cosine similarity of the main output;
* CTC: frame-argmax agreement and the greedy transcripts' character error rate against
  the fp32 transcripts (percent; on collapsed token ids, i.e. characters for a
  character vocabulary);
* SequenceClassification: top-1 agreement; AudioFrameClassification: frame agreement.

Thresholds below are the defaults; ``--gate [PRECISION.]KEY=VALUE`` overrides them. The task
metrics decide; the scaled error only catches a broken conversion. Margins, measured on the
bundled model with the shipped 7-bit int8 weights (benchmarks/results/int8-formats.md): int8
scaled error 0.014 on AVX2 (saturating int8 kernel) and 0.013 on SSE4.2 (exact, as VNNI),
int8-qdq 0.026 / 0.024, against the 0.1 bound; cosine >= 0.9999, agreement 1 and CER 0 on
both, against 0.98 / 0.95 / 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runtime.decode import edit_distance, greedy_ids
from runtime.errors import OptionError
from runtime.precisions import PRECISIONS, gated
from runtime.shapes import output_frames

from ..model.registry import HEADS
from ..parity.compare import tolerance

# The defaults are each precision's `gate` in runtime.precisions. Published int8 Conformer results
# range from no loss to doubled WER: the task metrics (agreement, CER) gate, the tensor metrics only
# catch gross breakage.


# (threshold key, metric, +1: metric must not exceed it / -1: must not fall below it)
CHECKS = (("max_scaled_error", "scaled_error", 1), ("min_cosine", "cosine", -1),
          ("min_agreement", "agreement", -1), ("max_cer", "cer", 1))


@dataclass
class GateRow:
    """One metric against its threshold, with the figure recorded at export when re-checking."""

    metric: str
    value: float
    limit: float
    sign: int
    recorded: float | None = None

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.value)) and (self.value - self.limit) * self.sign <= 0

    def row(self) -> str:
        at_export = "" if self.recorded is None else f" (at export {self.recorded:.6g})"
        bound = f"{'<=' if self.sign > 0 else '>='} {self.limit:g}"
        return f"{self.metric:<14} {self.value:<12.6g}{at_export:<26} {bound:<10} {'ok' if self.ok else 'FAIL'}"


@dataclass
class GateResult:
    precision: str
    metrics: dict[str, float]
    thresholds: dict[str, float]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def record(self) -> dict:
        return {"passed": self.passed, "metrics": self.metrics, "thresholds": self.thresholds,
                "failures": self.failures}

    def report(self) -> str:
        lines = [f"{self.precision} accuracy gate {'passed' if self.passed else 'FAILED'}:"]
        lines += [f"  {k:<22} {v:.6g}" for k, v in self.metrics.items()]
        lines += [f"  FAIL {f}" for f in self.failures]
        return "\n".join(lines)

    def rows(self, recorded: dict | None = None) -> list[GateRow]:
        """The thresholded metrics as rows; `recorded`: metrics of an earlier run, shown beside."""
        return [GateRow(metric, self.metrics[metric], self.thresholds[limit], sign,
                        None if recorded is None else recorded.get(metric))
                for limit, metric, sign in CHECKS if limit in self.thresholds]


def parse_overrides(items) -> dict[str, dict[str, float]]:
    """["int8.max_cer=1", "min_cosine=0.9"] -> {"int8": {...}, "*": {...}}."""
    scopes = gated()
    known = {k for row in scopes.values() for k in row.gate} | {"max_scaled_error"}
    out: dict[str, dict[str, float]] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        scope, _, name = key.rpartition(".")
        if not sep or name not in known or (scope and scope not in scopes):
            raise OptionError(f"gate override {item!r} is not [PRECISION.]KEY=VALUE with KEY in {sorted(known)} "
                              f"and PRECISION in {sorted(scopes)}")
        try:
            out.setdefault(scope or "*", {})[name] = float(value)
        except ValueError as exc:
            raise OptionError(f"gate override {item!r}: {value!r} is not a number") from exc
    return out


def thresholds(precision: str, head: str, overrides: dict | None = None) -> dict[str, float]:
    spec = HEADS[head]
    table = {**PRECISIONS[precision].gate, "max_scaled_error": tolerance(precision, spec.main_output)}
    if not spec.transcripts:
        table.pop("max_cer")
    if not spec.argmax:
        table.pop("min_agreement")
    return with_overrides(table, precision, overrides, head)


def with_overrides(table: dict[str, float], precision: str, overrides: dict | None,
                   head: str = "") -> dict[str, float]:
    """`table` with parse_overrides' values for all precisions ("*"), then for `precision`, applied.

    A key the table lacks (max_cer on a head without transcripts) is an error, not ignored."""
    table = dict(table)
    for scope in ("*", precision):
        given = (overrides or {}).get(scope, {})
        unknown = sorted(set(given) - set(table))
        if unknown:
            raise OptionError(f"gate override {', '.join(unknown)} does not apply to the {precision} gate"
                              f"{' of the ' + head + ' head' if head else ''}; its thresholds are "
                              f"{', '.join(sorted(table))}")
        table.update(given)
    return table


def evaluate(precision: str, head: str, config: dict, reference, candidate, batches,
             overrides: dict | None = None, limits: dict | None = None) -> GateResult:
    """`reference` / `candidate`: callables (features, mask) -> {output name: array}.

    `limits`: the thresholds to judge by (e.g. those an export recorded); default: the
    precision's defaults with `overrides` applied.
    """
    limits = thresholds(precision, head, overrides) if limits is None else limits
    spec = HEADS[head]
    main = spec.main_output
    pairs = []  # (reference, candidate) per utterance, real frames only
    for features, mask in batches:
        ref, got = reference(features, mask)[main], candidate(features, mask)[main]
        for i, frames in enumerate(mask.sum(axis=1)):
            n = output_frames(int(frames), config) if spec.per_frame else None
            pairs.append((ref[i, :n] if n else ref[i], got[i, :n] if n else got[i]))
    metrics = _tensor_metrics(pairs)
    if spec.argmax:
        agree = [np.argmax(r, -1) == np.argmax(g, -1) for r, g in pairs]
        metrics["agreement"] = float(np.mean(np.concatenate([np.ravel(a) for a in agree])))
    if spec.transcripts:
        blank = int(config.get("pad_token_id") or 0)
        hyps, refs = [greedy_ids(g, blank) for _, g in pairs], [greedy_ids(r, blank) for r, _ in pairs]
        errors = sum(edit_distance(h, r) for h, r in zip(hyps, refs))
        metrics["cer"] = 100.0 * errors / max(1, sum(len(r) for r in refs))
    return GateResult(precision, metrics, limits, _failures(metrics, limits))


def _tensor_metrics(pairs) -> dict[str, float]:
    diffs = [np.abs(r.astype(np.float64) - g) for r, g in pairs]
    scale = max(float(np.abs(r).max()) for r, _ in pairs) or 1.0
    cosines = []
    for r, g in pairs:
        r, g = r.ravel().astype(np.float64), g.ravel().astype(np.float64)
        norm = np.linalg.norm(r) * np.linalg.norm(g)
        cosines.append(float(r @ g / norm) if norm else float(np.array_equal(r, g)))
    finite = all(np.isfinite(g).all() for _, g in pairs)
    return {"finite": float(finite), "max_abs": float(max(d.max() for d in diffs)),
            "mean_abs": float(np.mean(np.concatenate([d.ravel() for d in diffs]))),
            "scaled_error": float(max(d.max() for d in diffs)) / scale, "cosine": min(cosines)}


def _failures(metrics: dict, limits: dict) -> list[str]:
    out = [] if metrics["finite"] else ["non-finite outputs (NaN/Inf)"]
    for limit, metric, sign in CHECKS:
        if limit in limits and not (metrics[metric] - limits[limit]) * sign <= 0:  # NaN fails too
            out.append(f"{metric} {metrics[metric]:.6g} {'>' if sign > 0 else '<'} {limit} {limits[limit]:g}")
    return out
