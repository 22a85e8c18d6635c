"""The contract values, pinned: every parity tolerance and every gate default.

They are the package's promise (what "parity ok" and "passed its gate" mean), so loosening one must
be a visible change to this file too, reviewed beside the measurement that justifies it (the
comments next to each value in exporter/parity/compare.py and exporter/quantize/gates.py). Other
tests only compare them with each other, which a loosened bound passes.
"""

from __future__ import annotations

from exporter.parity.compare import SCALED, TOLERANCES, is_scaled, tolerance
from runtime.precisions import PRECISIONS

PINNED_TOLERANCES = {
    "reference": {"*": 1e-5},
    "fp32": {"*": 1e-4},
    "fp32-frontend": {"*": 1e-3, "output_lengths": 0.0},
    "sherpa-onnx": {"*": 1e-3, "lengths": 0.0},
    "features": {"*": 2e-4, "attention_mask": 0.0},
    "pipeline": {"*": 1e-4, "timestamp": 1e-6},
}
# name: (targets, tolerance against fp32 (scaled), gate defaults, TensorRT plan, its tolerance)
PINNED_PRECISIONS = {
    "fp32": (("ort", "tensorrt"), None, {}, "fp32", 1e-3),
    "fp16": (("ort", "tensorrt"), 5e-3, {"min_cosine": 0.999, "min_agreement": 0.99, "max_cer": 0.1}, "fp16", 1e-2),
    "int8": (("ort",), 0.1, {"min_cosine": 0.98, "min_agreement": 0.95, "max_cer": 0.5}, None, None),
    "int8-qdq": (("ort", "tensorrt"), 0.1, {"min_cosine": 0.98, "min_agreement": 0.95, "max_cer": 0.5}, "int8", 0.1),
    "bf16": (("ort", "tensorrt"), 0.05, {"min_cosine": 0.999, "min_agreement": 0.99, "max_cer": 0.1}, None, None),
    "int4": (("ort",), 0.25, {"min_cosine": 0.95, "min_agreement": 0.90, "max_cer": 1.0}, None, None),
}


def test_comparison_tolerances_are_the_pinned_contract():
    assert TOLERANCES == PINNED_TOLERANCES
    assert set(SCALED) == set()  # the table's are absolute; every precision's (bf16's too) is scaled


def test_precision_rows_are_the_pinned_contract():
    assert {name: (p.targets, p.tolerance, dict(p.gate), p.plan, p.plan_tolerance) for name, p in PRECISIONS.items()} \
        == PINNED_PRECISIONS


def test_tolerance_lookup_reads_the_table_and_the_rows():
    assert tolerance("fp32", "logits") == 1e-4 and tolerance("features", "attention_mask") == 0.0
    assert tolerance("sherpa-onnx", "lengths") == 0.0 and tolerance("sherpa-onnx", "logits") == 1e-3
    assert tolerance("int8", "logits") == 0.1 and tolerance("int4", "embeddings") == 0.25
    assert tolerance("bf16", "logits") == 0.05
    assert tolerance("engine-fp32", "x") == 1e-3 and tolerance("engine-int8", "x") == 0.1
    assert [is_scaled(k) for k in ("fp32", "fp16", "int8-qdq", "engine-fp32", "engine-fp16", "bf16", "features")] \
        == [False, True, True, False, True, True, False]
