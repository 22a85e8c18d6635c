"""The contract values, pinned: every parity tolerance and every gate default.

They are the package's promise (what "parity ok" and "passed its gate" mean), so loosening one must
be a visible change to this file too, reviewed beside the measurement that justifies it (the
comments next to each value in exporter/parity/compare.py and exporter/quantize/gates.py). Other
tests only compare them with each other, which a loosened bound passes.
"""

from __future__ import annotations

from exporter.parity.compare import SCALED, TOLERANCES, tolerance
from exporter.quantize.gates import GATE_DEFAULTS

PINNED_TOLERANCES = {
    "reference": {"*": 1e-5},
    "fp32": {"*": 1e-4},
    "fp32-frontend": {"*": 1e-3, "output_lengths": 0.0},
    "sherpa-onnx": {"*": 1e-3, "lengths": 0.0},
    "features": {"*": 2e-4, "attention_mask": 0.0},
    "pipeline": {"*": 1e-4, "timestamp": 1e-6},
    "fp16": {"*": 5e-3},
    "bf16": {"*": 0.05},
    "int8": {"*": 0.1},
    "int8-qdq": {"*": 0.1},
    "int4": {"*": 0.25},
    "engine-fp32": {"*": 1e-3},
    "engine-fp16": {"*": 1e-2},
    "engine-int8": {"*": 0.1},
}
PINNED_SCALED = {"fp16", "bf16", "int8", "int8-qdq", "int4", "engine-fp16", "engine-int8"}
PINNED_GATES = {
    "fp16": {"min_cosine": 0.999, "min_agreement": 0.99, "max_cer": 0.1},
    "int8": {"min_cosine": 0.98, "min_agreement": 0.95, "max_cer": 0.5},
    "int8-qdq": {"min_cosine": 0.98, "min_agreement": 0.95, "max_cer": 0.5},
    "int4": {"min_cosine": 0.95, "min_agreement": 0.90, "max_cer": 1.0},
}


def test_parity_tolerances_are_the_pinned_contract():
    assert TOLERANCES == PINNED_TOLERANCES
    assert set(SCALED) == PINNED_SCALED  # a scaled tolerance is relative to the output's largest magnitude


def test_tolerance_lookup_reads_the_table_per_output():
    assert tolerance("fp32", "logits") == 1e-4 and tolerance("features", "attention_mask") == 0.0
    assert tolerance("sherpa-onnx", "lengths") == 0.0 and tolerance("sherpa-onnx", "logits") == 1e-3


def test_gate_defaults_are_the_pinned_contract():
    assert GATE_DEFAULTS == PINNED_GATES
