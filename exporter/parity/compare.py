"""Compare any backend's outputs with a reference; the one home of parity tolerances.

Tolerances are per comparison kind ("precision") and per output name. A failing
comparison reports max abs / max rel error and the index where the worst abs
error sits, so a regression points at a frame and a channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import ParityError

# max abs error allowed, per comparison and per output (default key "*").
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
    # Reduced precisions vs the fp32 variant, as a fraction of the output's largest magnitude
    # (SCALED): their absolute error grows with the output scale. Used as the gates'
    # max_scaled_error (exporter.quantize.gates), measured on the gate's held-out speech. Measured on the
    # bundled model (benchmarks/results/int8-formats.md), AVX2 (saturating int8 kernel) / SSE4.2
    # (exact int8 sums, as VNNI and AMX): fp16 3.7e-4 / 3.7e-4, int8 0.014 / 0.013, int8-qdq
    # 0.026 / 0.024, int4 0.069 / 0.069 -- 4x or more under these bounds on both. Full-range int8
    # weights reached 0.092 / 0.010 (int8) and 0.103 / 0.023 (int8-qdq): the AVX2 saturation the
    # 7-bit weights remove. The task metrics judge accuracy; these bounds catch a broken conversion.
    "fp16": {"*": 5e-3},
    # bfloat16 keeps 8 significant bits (fp16: 11): OpenVINO running an fp32 graph in bf16 read 8.9e-3
    # against transformers on the tiny preset (AMD Zen 4, AVX512_BF16; benchmarks/results/README.md)
    "bf16": {"*": 0.05},
    "int8": {"*": 0.1},
    "int8-qdq": {"*": 0.1},
    "int4": {"*": 0.25},
    # TensorRT plans vs the PyTorch reference. fp32 plans are built with TF32 off; their
    # kernels still sum in other orders than onnxruntime's, hence 1e-3 rather than 1e-4.
    "engine-fp32": {"*": 1e-3},
    "engine-fp16": {"*": 1e-2},
    "engine-int8": {"*": 0.1},
}
SCALED = frozenset({"fp16", "bf16", "int8", "int8-qdq", "int4", "engine-fp16", "engine-int8"})


def tolerance(precision: str, output: str) -> float:
    if precision not in TOLERANCES:
        raise KeyError(f"no parity tolerance for precision {precision!r}; known: {sorted(TOLERANCES)}")
    table = TOLERANCES[precision]
    return table.get(output, table["*"])


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    max_rel: float
    where: tuple[int, ...]
    tolerance: float
    shape_ok: bool = True
    finite: bool = True
    scaled: bool = False  # errors are relative to the reference's largest magnitude (SCALED precisions)
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
    where = np.unravel_index(int(np.nanargmax(err)), err.shape)
    rel = err / np.maximum(np.abs(reference), 1e-6)
    return OutputDiff(name, float(np.nanmax(err)), float(np.nanmax(rel)),
                      tuple(int(i) for i in where), tol, finite=finite)


def compare(reference: dict, candidate: dict, precision: str, label: str = "") -> list[OutputDiff]:
    """Diff every reference output; missing candidate outputs count as failures.

    For SCALED precisions both sides are divided by the reference's largest magnitude first.
    """
    rows = []
    for name, ref in reference.items():
        tol = tolerance(precision, name)
        if name not in candidate:
            rows.append(OutputDiff(name, float("inf"), float("inf"), (), tol, shape_ok=False))
            continue
        ref, got = _numpy(ref), _numpy(candidate[name])
        if precision in SCALED:
            scale = float(np.abs(ref).max()) if ref.size else 1.0
            ref, got = ref / (scale or 1.0), got / (scale or 1.0)
        rows.append(diff(name, ref, got, tol))
        rows[-1].scaled = precision in SCALED
    return rows


def assert_close(reference: dict, candidate: dict, precision: str, label: str = "") -> list[OutputDiff]:
    rows = compare(reference, candidate, precision, label)
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

