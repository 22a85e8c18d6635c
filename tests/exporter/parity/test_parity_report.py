from __future__ import annotations

import numpy as np
import pytest

from exporter.parity.compare import assert_close, tolerance
from runtime.errors import ParityError


def test_failure_names_output_error_and_location():
    ref = {"logits": np.zeros((2, 3, 4), np.float32)}
    bad = {"logits": np.zeros((2, 3, 4), np.float32)}
    bad["logits"][1, 2, 3] = 0.5
    with pytest.raises(ParityError, match=r"logits .*max_abs=5\.000e-01.*at \(1, 2, 3\).*FAIL"):
        assert_close(ref, bad, "fp32")


def test_nan_and_shape_and_missing_output_fail():
    ref = {"a": np.zeros(3), "b": np.zeros(3), "c": np.zeros(3)}
    with pytest.raises(ParityError) as info:
        assert_close(ref, {"a": np.array([0, np.nan, 0]), "b": np.zeros(4)}, "fp32")
    text = str(info.value)
    assert text.count("FAIL") == 3


def test_within_tolerance_passes_and_tolerances_are_per_precision():
    ref = {"x": np.ones(5)}
    rows = assert_close(ref, {"x": np.ones(5) + 5e-5}, "fp32")
    assert rows[0].ok and tolerance("reference", "x") < tolerance("fp32", "x")
    with pytest.raises(ParityError):
        assert_close(ref, {"x": np.ones(5) + 5e-5}, "reference")
