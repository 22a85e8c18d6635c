"""Compare any backend's outputs with a reference; the one home of parity tolerances.

Tolerances are per comparison kind ("precision") and per output name. A failing
comparison reports max abs / max rel error and the index where the worst abs
error sits, so a regression points at a frame and a channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import ParityError
from runtime.precisions import PRECISIONS, plan_precision

# max abs error allowed per comparison that is not a precision, and per output (default key "*").
# A precision's tolerance against the fp32 variant, and its TensorRT plan's against the reference
# ("engine-<plan>"), are its row of runtime.precisions.
TOLERANCES: dict[str, dict[str, float]] = {
    # our PyTorch reference vs transformers' PyTorch implementation
    "reference": {"*": 1e-5},
    # exported fp32 ONNX run by onnxruntime vs our PyTorch reference
    "fp32": {"*": 1e-4},
    # raw-audio variant (graph front end + model) vs runtime FeatureExtractor + PyTorch reference:
    # the front ends agree to ~4e-4 on normalised features (float32 FFT vs DFT matmul).
    "fp32-frontend": {"*": 1e-3, "output_lengths": 0.0},
    # the sherpa-onnx graph (raw log-mel in, normalisation inside, float32) vs FeatureExtractor + reference
    "sherpa-onnx": {"*": 1e-3, "lengths": 0.0},
    # runtime.Processor / FeatureExtractor vs transformers' Wav2Vec2BertProcessor: float64 framing and
    # FFT on both sides. Worst measured 3.7e-5 (numpy front end, 719 samples of noise: 2 frames, whose
    # normalisation amplifies rounding), 8.6e-6 on 30 s, 2.4e-6..5.5e-6 on the bundled speech: 5x margin
    # over the worst. Normalising with the wrong variance (ddof 0) errs by 1.1e-3. Masks must be equal.
    "features": {"*": 2e-4, "attention_mask": 0.0},
    # runtime.pipeline vs transformers.pipeline on the same model (fp32 ONNX vs PyTorch): word and
    # character times are frame counts x 40 ms on both sides (equal unless an argmax flips);
    # classification scores are softmaxes of logits that agree to the fp32 tolerance above
    "pipeline": {"*": 1e-4, "timestamp": 1e-6},
}
SCALED = frozenset()  # the scaled comparisons among TOLERANCES; every reduced precision's is scaled
ENGINE_PREFIX = "engine-"  # "engine-<plan>": a TensorRT plan against the PyTorch reference


def _precision_tolerance(kind: str) -> tuple[float, bool] | None:
    """(tolerance, scaled) of a precision (against fp32) or of a TensorRT plan (against the reference)."""
    if kind in PRECISIONS and PRECISIONS[kind].tolerance is not None:
        return PRECISIONS[kind].tolerance, True
    row = plan_precision(kind[len(ENGINE_PREFIX):]) if kind.startswith(ENGINE_PREFIX) else None
    if row is not None:
        return row.plan_tolerance, row.scaled
    return None


def known_tolerances() -> list[str]:
    """Every comparison kind with a tolerance: the table's, the precisions' and their plans'."""
    return sorted({*TOLERANCES, *(p.name for p in PRECISIONS.values() if p.tolerance is not None),
                   *(ENGINE_PREFIX + p.plan for p in PRECISIONS.values() if p.plan)})


def tolerance(precision: str, output: str) -> float:
    """The max abs error allowed for `output` in a comparison of kind `precision`."""
    if precision in TOLERANCES:
        table = TOLERANCES[precision]
        return table.get(output, table["*"])
    found = _precision_tolerance(precision)
    if found is None:
        raise KeyError(f"no parity tolerance for precision {precision!r}; known: {known_tolerances()}")
    return found[0]


def is_scaled(precision: str) -> bool:
    """Whether the comparison divides both sides by the reference's largest magnitude first."""
    if precision in TOLERANCES:
        return precision in SCALED
    found = _precision_tolerance(precision)
    return bool(found and found[1])


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    max_rel: float
    where: tuple[int, ...]
    tolerance: float
    shape_ok: bool = True
    finite: bool = True
    scaled: bool = False  # errors are relative to the reference's largest magnitude (reduced precisions)
    form: str = ""  # the file compared, where one check covers several (verify: a variant and its CPU form)

    @property
    def ok(self) -> bool:
        return self.shape_ok and self.finite and self.max_abs <= self.tolerance

    def row(self) -> str:
        status = "ok" if self.ok else "FAIL"
        where = f"{self.form:<24} " if self.form else ""
        if not self.shape_ok:
            return f"{where}{self.name:<20} shape mismatch {'':>34} {status}"
        label = "max_abs/scale" if self.scaled else "max_abs"
        return (f"{where}{self.name:<20} {label}={self.max_abs:.3e} max_rel={self.max_rel:.3e} "
                f"at {self.where} tol={self.tolerance:.0e} {status}")


def diff(name: str, reference: np.ndarray, candidate: np.ndarray, tol: float) -> OutputDiff:
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        return OutputDiff(name, float("inf"), float("inf"), (), tol, shape_ok=False)
    # A non-finite value where the reference is finite is a failure whatever the tolerance.
    finite = not bool(np.any(~np.isfinite(candidate) & np.isfinite(reference)))
    if reference.size == 0:
        return OutputDiff(name, 0.0, 0.0, (), tol, finite=finite)
    err = np.abs(reference - candidate)
    err = np.where(np.isnan(reference) & np.isnan(candidate), 0.0, err)
    if np.isnan(err).all():  # a NaN reference against finite or infinite values everywhere: nothing agrees
        return OutputDiff(name, float("nan"), float("nan"), (), tol, finite=finite)
    where = np.unravel_index(int(np.nanargmax(err)), err.shape)
    rel = np.where(err == 0, 0.0, err / np.maximum(np.abs(reference), 1e-6))  # NaN agreeing with NaN: 0
    return OutputDiff(name, float(np.nanmax(err)), float(np.nanmax(rel)),
                      tuple(int(i) for i in where), tol, finite=finite)


def compare(reference: dict, candidate: dict, precision: str) -> list[OutputDiff]:
    """Diff every reference output; missing candidate outputs count as failures.

    For scaled comparisons (is_scaled) both sides are divided by the reference's largest magnitude first.
    """
    rows = []
    for name, ref in reference.items():
        tol = tolerance(precision, name)
        if name not in candidate:
            rows.append(OutputDiff(name, float("inf"), float("inf"), (), tol, shape_ok=False))
            continue
        ref, got = _numpy(ref), _numpy(candidate[name])
        scaled = is_scaled(precision)
        if scaled:
            scale = float(np.abs(ref).max()) if ref.size else 1.0
            ref, got = ref / (scale or 1.0), got / (scale or 1.0)
        rows.append(diff(name, ref, got, tol))
        rows[-1].scaled = scaled
    return rows


def assert_close(reference: dict, candidate: dict, precision: str, label: str = "") -> list[OutputDiff]:
    rows = compare(reference, candidate, precision)
    if not all(r.ok for r in rows):
        table = "\n  ".join(r.row() for r in rows)
        raise ParityError(f"parity check failed ({precision}{', ' + label if label else ''}):\n  {table}")
    return rows


def keep_worst(worst: dict[str, OutputDiff], rows: list[OutputDiff]) -> None:
    """Fold one comparison's rows into `worst`: per output, the row with the largest abs error."""
    for row in rows:
        if row.name not in worst or row.max_abs > worst[row.name].max_abs:
            worst[row.name] = row


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)

