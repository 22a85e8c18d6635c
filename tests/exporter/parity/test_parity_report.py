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


def test_diff_figures_by_hand():
    from exporter.parity.compare import diff

    ref = np.array([[1.0, -2.0], [0.0, 4.0]])
    got = np.array([[1.5, -2.0], [1e-5, 3.0]])
    row = diff("y", ref, got, 0.1)
    assert (row.max_abs, row.where, row.tolerance) == (1.0, (1, 1), 0.1)
    assert row.max_rel == pytest.approx(1e-5 / 1e-6)  # |ref| is floored at 1e-6: the 0.0 entry dominates
    assert row.finite and row.shape_ok and not row.ok
    assert diff("y", ref, ref + 0.125, 0.125).ok and not diff("y", ref, ref + 0.25, 0.125).ok  # inclusive bound
    both_nan = diff("y", np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), 0.0)
    assert both_nan.ok and both_nan.max_abs == 0.0 and both_nan.finite
    new_inf = diff("y", np.array([0.0, 1.0]), np.array([np.inf, 1.0]), 1e9)
    assert not new_inf.finite and not new_inf.ok
    empty = diff("y", np.zeros((0, 3)), np.zeros((0, 3)), 0.0)
    assert empty.ok and (empty.max_abs, empty.max_rel, empty.where) == (0.0, 0.0, ())
    shape = diff("y", np.zeros(3), np.zeros(4), 1.0)
    assert not shape.shape_ok and not shape.ok and shape.max_abs == float("inf")


def test_rows_read_as_documented():
    from exporter.parity.compare import OutputDiff

    assert OutputDiff("logits", 7.629e-06, 2.131e-05, (0, 18, 19), 1e-4).row() == \
        "logits               max_abs=7.629e-06 max_rel=2.131e-05 at (0, 18, 19) tol=1e-04 ok"
    scaled = OutputDiff("logits", 0.2, 0.3, (1,), 0.1, scaled=True, form="model.int8.onnx")
    assert scaled.row() == ("model.int8.onnx          logits               max_abs/scale=2.000e-01 max_rel=3.000e-01 "
                            "at (1,) tol=1e-01 FAIL")
    assert OutputDiff("x", 0.0, 0.0, (), 1.0, shape_ok=False).row() == f"x{' ' * 19} shape mismatch {'':>34} FAIL"


def test_scaled_precisions_compare_relative_to_the_largest_magnitude():
    from exporter.parity.compare import compare

    ref = {"logits": np.array([100.0, -50.0, 0.0])}
    got = {"logits": np.array([100.0, -50.0, 5.0])}
    (int8,) = compare(ref, got, "int8")
    assert int8.scaled and int8.max_abs == pytest.approx(0.05) and int8.ok  # 5 / 100 <= 0.1
    (fp32,) = compare(ref, got, "fp32")
    assert not fp32.scaled and fp32.max_abs == 5.0 and not fp32.ok
    (zero,) = compare({"x": np.zeros(2)}, {"x": np.zeros(2)}, "int8")  # a zero reference divides by 1
    assert zero.ok and zero.max_abs == 0.0
    (missing,) = compare({"x": np.zeros(2)}, {}, "int8")
    assert not missing.shape_ok and missing.tolerance == 0.1


def test_assert_close_message_names_precision_and_label():
    with pytest.raises(ParityError) as info:
        assert_close({"x": np.zeros(2)}, {"x": np.ones(2)}, "fp32", label="37 frames, batch 3")
    text = str(info.value)
    assert text.startswith("parity check failed (fp32, 37 frames, batch 3):\n  x ")
    with pytest.raises(ParityError, match=r"^parity check failed \(fp16\):\n  x "):
        assert_close({"x": np.zeros(2)}, {"x": np.ones(2)}, "fp16")


def test_torch_tensors_compare_as_numpy():
    torch = pytest.importorskip("torch")
    rows = assert_close({"x": torch.ones(3, requires_grad=True)}, {"x": torch.ones(3)}, "fp32")
    assert rows[0].max_abs == 0.0


def test_keep_worst_keeps_the_largest_error_per_output():
    from exporter.parity.compare import OutputDiff, keep_worst

    worst = {}
    keep_worst(worst, [OutputDiff("a", 1e-5, 0, (), 1), OutputDiff("b", 3e-5, 0, (), 1)])
    keep_worst(worst, [OutputDiff("a", 2e-5, 0, (1,), 1), OutputDiff("b", 1e-5, 0, (2,), 1)])
    assert (worst["a"].max_abs, worst["a"].where, worst["b"].max_abs, worst["b"].where) == (2e-5, (1,), 3e-5, ())


def test_unknown_tolerance_names_the_known_ones():
    with pytest.raises(KeyError, match=r"no parity tolerance for precision 'fp8'; known: \['bf16', "):
        tolerance("fp8", "x")


def test_integer_outputs_are_compared_without_wrapping():
    from exporter.parity.compare import diff

    row = diff("lengths", np.array([0], np.uint8), np.array([255], np.uint8), 0.0)
    assert row.max_abs == 255.0 and not row.ok  # uint8 arithmetic would say 1
    assert diff("x", np.array([1000], np.float16), np.array([1001], np.float16), 0.5).max_abs == 1.0


def test_rows_of_what_could_not_be_compared():
    from exporter.parity.compare import compare, diff

    shape = diff("y", np.zeros(3), np.zeros(4), 0.5)
    assert (shape.name, shape.max_abs, shape.max_rel, shape.where, shape.tolerance) == ("y", np.inf, np.inf, (), 0.5)
    assert shape.shape_ok is False and shape.finite is True
    empty = diff("y", np.zeros(0), np.zeros(0), 0.5)
    assert empty.name == "y" and empty.tolerance == 0.5
    broken = diff("y", np.array([np.nan]), np.array([np.inf]), 0.5)  # a NaN reference: nothing agrees
    assert not broken.ok and np.isnan(broken.max_abs) and broken.where == ()
    assert diff("y", np.array([np.nan, np.nan]), np.array([np.nan, np.nan]), 0.0).ok  # NaN where NaN: agreed
    missing, present = compare({"a": np.zeros(2), "b": np.ones(2)}, {"b": np.ones(2)}, "fp32")
    assert (missing.name, missing.max_abs, missing.max_rel, missing.where, missing.shape_ok) == \
        ("a", np.inf, np.inf, (), False)
    assert present.name == "b" and present.ok  # the outputs after a missing one are still compared


def test_each_output_has_its_own_tolerance_and_scale():
    from exporter.parity.compare import compare

    rows = compare({"logits": np.zeros(2), "lengths": np.array([3.0])},
                   {"logits": np.full(2, 5e-4), "lengths": np.array([3.0005])}, "sherpa-onnx")
    assert [r.ok for r in rows] == [True, False]  # 5e-4 is within 1e-3 for logits, but lengths must be equal
    (zero,) = compare({"x": np.zeros(2)}, {"x": np.array([0.0, 0.04])}, "int8")
    assert zero.max_abs == pytest.approx(0.04) and zero.ok  # an all-zero reference: divided by 1
    (empty,) = compare({"x": np.zeros((0, 3))}, {"x": np.zeros((0, 3))}, "int8")
    assert empty.ok and empty.max_abs == 0.0


def test_a_two_row_failure_reads_one_row_a_line():
    with pytest.raises(ParityError) as info:
        assert_close({"a": np.zeros(1), "b": np.zeros(1)}, {"a": np.ones(1), "b": np.zeros(1)}, "fp32")
    lines = str(info.value).split("\n")
    assert len(lines) == 3 and lines[0] == "parity check failed (fp32):"
    assert lines[1].startswith("  a ") and lines[1].endswith("FAIL") and lines[2].startswith("  b ")


def test_torch_tensors_are_compared_by_value():
    torch = pytest.importorskip("torch")
    with pytest.raises(ParityError):
        assert_close({"x": torch.ones(3)}, {"x": torch.zeros(3)}, "fp32")


def test_keep_worst_keeps_the_first_of_equal_errors():
    from exporter.parity.compare import OutputDiff, keep_worst

    worst = {}
    keep_worst(worst, [OutputDiff("a", 1e-5, 0, (0,), 1)])
    keep_worst(worst, [OutputDiff("a", 1e-5, 0, (9,), 1)])
    assert worst["a"].where == (0,)


def test_names_that_only_look_like_engine_kinds_have_no_tolerance():
    from exporter.parity.compare import known_tolerances

    for kind in ("abcdefgfp32", "engine-int4", "engine-"):
        with pytest.raises(KeyError):
            tolerance(kind, "x")
    assert known_tolerances() == ["bf16", "engine-fp16", "engine-fp32", "engine-int8", "features", "fp16", "fp32",
                                  "fp32-frontend", "int4", "int8", "int8-qdq", "pipeline", "reference",
                                  "sherpa-onnx"]
