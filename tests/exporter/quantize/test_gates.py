"""The accuracy gate's logic and `verify`'s re-check of it.

Verdicts are tested on inputs whose metrics sit far from every threshold (identical outputs,
1% noise, unrelated logits, NaN), never on a particular CPU's int8 rounding.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.export import export
from exporter.quantize.gates import GateRow, evaluate, parse_overrides, thresholds
from exporter.verify import verify_artifact
from runtime.errors import GateError, InputError

from ...conftest import permissive_quant

CONFIG = {"pad_token_id": 0, "add_adapter": False}  # output frames = input frames
VOCAB = 12


def _logits(frames: int, seed: int) -> np.ndarray:
    """Peaked CTC-like logits: one clear winner per frame, blanks between tokens."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, frames)
    ids[::2] = 0
    logits = rng.standard_normal((frames, VOCAB)).astype(np.float32)
    logits[np.arange(frames), ids] += 8.0
    return logits


BATCHES = [(np.zeros((2, 50, 160), np.float32), np.array([[1] * 50, [1] * 30 + [0] * 20], np.int64))]
REFERENCE = np.stack([_logits(50, 1), _logits(50, 2)])


def reference(features, mask):
    return {"logits": REFERENCE.copy()}


def noisy(scale: float):
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(REFERENCE.shape).astype(np.float32) * scale * np.abs(REFERENCE).max()
    return lambda features, mask: {"logits": REFERENCE + noise}


def unrelated(features, mask):
    return {"logits": np.stack([_logits(50, 7), _logits(50, 8)])}


def test_identical_outputs_pass_with_exact_metrics():
    result = evaluate("int8", "CTC", CONFIG, reference, reference, BATCHES)
    assert result.passed and result.failures == []
    assert result.metrics["scaled_error"] == 0 and result.metrics["cer"] == 0
    assert result.metrics["agreement"] == 1 and result.metrics["cosine"] == pytest.approx(1)


def test_small_noise_passes_every_reduced_precision():
    # 0.1% of the largest logit: 50x under fp16's scaled-error bound, and nothing changes its argmax
    for precision in ("fp16", "int8", "int8-qdq", "int4"):
        result = evaluate(precision, "CTC", CONFIG, reference, noisy(1e-4), BATCHES)
        assert result.passed, result.report()


def test_unrelated_outputs_fail_on_every_metric():
    result = evaluate("int8", "CTC", CONFIG, reference, unrelated, BATCHES)
    assert not result.passed
    failed = {f.split()[0] for f in result.failures}
    assert failed == {"scaled_error", "cosine", "agreement", "cer"}, result.failures
    assert result.metrics["cer"] > 50 and result.metrics["cosine"] < 0.5


def test_non_finite_output_fails():
    def nan(features, mask):
        out = REFERENCE.copy()
        out[0, 3, 2] = np.nan
        return {"logits": out}

    result = evaluate("int8", "CTC", CONFIG, reference, nan, BATCHES)
    assert not result.passed and "non-finite outputs (NaN/Inf)" in result.failures


def test_padded_frames_are_not_judged():
    def garbage_in_padding(features, mask):
        out = REFERENCE.copy()
        out[1, 30:] = 1e6  # utterance 1 has 30 real frames
        return {"logits": out}

    assert evaluate("int8", "CTC", CONFIG, reference, garbage_in_padding, BATCHES).passed


def test_overrides_relax_and_tighten():
    relaxed = parse_overrides(["max_scaled_error=10", "min_cosine=-1", "min_agreement=0", "int8.max_cer=1000"])
    assert evaluate("int8", "CTC", CONFIG, reference, unrelated, BATCHES, relaxed).passed
    tight = parse_overrides(["int8.max_scaled_error=1e-9"])
    result = evaluate("int8", "CTC", CONFIG, reference, noisy(1e-4), BATCHES, tight)
    assert [f.split()[0] for f in result.failures] == ["scaled_error"]
    # an override scoped to another precision does not apply; the precision's own beats "*"
    assert evaluate("int8", "CTC", CONFIG, reference, noisy(1e-4), BATCHES,
                    parse_overrides(["fp16.max_scaled_error=1e-9"])).passed
    both = parse_overrides(["max_scaled_error=1e-9", "int8.max_scaled_error=1"])
    assert thresholds("int8", "CTC", both)["max_scaled_error"] == 1


def test_given_limits_are_used_as_they_are():
    limits = {"max_scaled_error": 1e-9, "min_cosine": 0.0}
    result = evaluate("int8", "CTC", CONFIG, reference, noisy(1e-4), BATCHES, limits=limits)
    assert result.thresholds == limits and [f.split()[0] for f in result.failures] == ["scaled_error"]


def test_heads_judge_their_own_metrics():
    assert set(thresholds("int8", "XVector")) == {"min_cosine", "max_scaled_error"}
    assert set(thresholds("int8", "SequenceClassification")) == {"min_cosine", "min_agreement", "max_scaled_error"}

    def embeddings(value):
        return lambda features, mask: {"embeddings": value}

    base = np.random.default_rng(0).standard_normal((2, 12)).astype(np.float32)
    good = evaluate("int8", "XVector", CONFIG, embeddings(base), embeddings(base * 1.001), BATCHES)
    bad = evaluate("int8", "XVector", CONFIG, embeddings(base), embeddings(-base), BATCHES)
    assert good.passed and not bad.passed and "agreement" not in bad.metrics


def test_gate_rows_show_the_recorded_figures():
    result = evaluate("int8", "CTC", CONFIG, reference, noisy(1e-4), BATCHES)
    rows = result.rows(result.metrics)
    assert [r.metric for r in rows] == ["scaled_error", "cosine", "agreement", "cer"]
    assert all(r.ok for r in rows) and "at export" in rows[0].row()
    assert not GateRow("cosine", float("nan"), 0.9, -1).ok  # NaN never passes


# ---------------------------------------------------------------- verify re-runs the export's gate
@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory):
    return export(None, tmp_path_factory.mktemp("g") / "art", precisions=("fp32", "int8"), quant=permissive_quant())


def test_verify_reproduces_the_recorded_figures(int8_artifact):
    variant = json.loads((int8_artifact / "manifest.json").read_text())["variants"]["int8"]
    rows = verify_artifact(int8_artifact, precision="int8")
    assert {r.metric: r.value for r in rows} == {r.metric: r.recorded for r in rows}  # same machine, same data
    recorded = variant["gate"]["thresholds"]  # the fixture's permissive ones, not the defaults
    assert [r.limit for r in rows] == [recorded[k] for k in ("max_scaled_error", "min_cosine", "min_agreement",
                                                               "max_cer")]


def test_verify_applies_overrides_on_the_recorded_thresholds(int8_artifact):
    with pytest.raises(GateError, match="cosine .* < min_cosine 1.5"):  # a cosine never exceeds 1
        verify_artifact(int8_artifact, precision="int8", gates=parse_overrides(["int8.min_cosine=1.5"]))
    result = CliRunner().invoke(main, ["verify", str(int8_artifact), "--gate", "min_cosine=1.5"])
    assert result.exit_code == GateError.exit_code and "fails its accuracy gate" in result.output


def test_verify_checks_every_variant_by_default(int8_artifact):
    result = CliRunner().invoke(main, ["verify", str(int8_artifact)])
    assert result.exit_code == 0, result.output
    assert "fp32 parity ok" in result.output and "int8 gate ok" in result.output
    assert "(at export" in result.output


def test_verify_needs_the_recorded_gate_data_or_a_copy(tmp_path):
    from exporter.quantize.calibration import bundled_samples

    data = tmp_path / "gate"
    data.mkdir()
    for path in bundled_samples()[1::2]:
        shutil.copy(path, data / path.name)
    art = export(None, tmp_path / "art", precisions=("fp32", "int8"), quant=permissive_quant(gate_data=str(data)))
    recorded = verify_artifact(art, precision="int8")
    moved = tmp_path / "moved"
    data.rename(moved)
    with pytest.raises(InputError, match="--gate-data"):
        verify_artifact(art, precision="int8")
    again = verify_artifact(art, precision="int8", gate_data=str(moved))  # the same content elsewhere
    assert [r.value for r in again] == [r.value for r in recorded] and again[0].recorded is not None
    (moved / "sample1.wav").unlink()  # other data: judged by the thresholds, no recorded column
    other = verify_artifact(art, precision="int8", gate_data=str(moved))
    assert all(r.recorded is None for r in other)


def test_verify_reads_a_manifest_with_the_old_gate_data_label(int8_artifact, tmp_path):
    art = tmp_path / "old"
    shutil.copytree(int8_artifact, art)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["variants"]["int8"]["gate_data"] = "bundled samples 1, 3, 5"  # as written before the record
    (art / "manifest.json").write_text(json.dumps(manifest))
    rows = verify_artifact(art, precision="int8")
    assert all(r.ok and r.recorded is None for r in rows)


def test_an_override_the_head_lacks_is_an_error():
    from runtime.errors import ExportError

    with pytest.raises(ExportError, match="max_cer does not apply to the int8 gate of the XVector head"):
        thresholds("int8", "XVector", parse_overrides(["max_cer=1"]))
    with pytest.raises(ExportError, match="min_agreement does not apply"):
        thresholds("fp16", "Model", parse_overrides(["fp16.min_agreement=0.5"]))
    assert thresholds("int8", "XVector", parse_overrides(["min_cosine=0.5"]))["min_cosine"] == 0.5


def test_short_gate_utterances_left_out_are_counted(tmp_path, caplog):
    import logging

    from exporter.quantize.calibration import held_out_batches

    rng = np.random.default_rng(0)
    np.save(tmp_path / "long.npy", rng.standard_normal((40, 160)).astype(np.float32))
    np.save(tmp_path / "short.npy", rng.standard_normal((3, 160)).astype(np.float32))
    with caplog.at_level(logging.INFO, logger="w2vbert"):
        batches = held_out_batches(tmp_path, {}, 160, min_frames=10)
    assert batches[0][0].shape == (1, 40, 160)
    assert "1 of 2 utterances are shorter than the model's 10 frames" in caplog.text


def _frames(ids, vocab=5):
    logits = np.zeros((len(ids), vocab), np.float32)
    logits[np.arange(len(ids)), ids] = 4.0
    return logits


def test_metrics_by_hand():
    """Two utterances of four frames: every figure computed here by hand."""
    ref = np.stack([_frames([1, 1, 0, 2]), _frames([3, 3, 3, 0])])
    got = np.stack([_frames([1, 0, 1, 2]), _frames([3, 3, 3, 0])])
    batches = [(np.zeros((2, 4, 160), np.float32), np.ones((2, 4), np.int64))]
    result = evaluate("int8", "CTC", CONFIG, lambda f, m: {"logits": ref}, lambda f, m: {"logits": got}, batches)
    m = result.metrics
    assert m["finite"] == 1.0 and m["max_abs"] == 4.0 and m["scaled_error"] == 1.0  # |4 - 0| / 4
    assert m["mean_abs"] == pytest.approx(4 * 4.0 / 40)  # two frames differ, in two entries each: 4 of 40 values
    assert m["agreement"] == pytest.approx(6 / 8)  # frames 1 and 2 of the first utterance changed winner
    assert m["cosine"] == pytest.approx(2 / 4)  # the first utterance: 2 of 4 peaks shared
    # greedy: [1, 2] -> [1, 1, 2] (one insertion) and [3] -> [3]: 1 error in 3 reference tokens
    assert m["cer"] == pytest.approx(100 / 3)
    assert result.failures == ["scaled_error 1 > max_scaled_error 0.1", "cosine 0.5 < min_cosine 0.98",
                               "agreement 0.75 < min_agreement 0.95", "cer 33.3333 > max_cer 0.5"]
    assert result.report().splitlines()[0] == "int8 accuracy gate FAILED:"
    assert "  cer                    33.3333" in result.report().splitlines()
    assert result.report().splitlines()[-1] == "  FAIL cer 33.3333 > max_cer 0.5"
    assert result.record() == {"passed": False, "metrics": m, "thresholds": result.thresholds,
                               "failures": result.failures}


def test_the_blank_is_the_configs_pad_token():
    ref = np.stack([_frames([3, 1, 3, 1])])  # with 3 as the blank: "1 1"; with 0: "3 1 3 1"
    got = np.stack([_frames([1, 1, 1, 1])])  # "1" whatever the blank
    batches = [(np.zeros((1, 4, 160), np.float32), np.ones((1, 4), np.int64))]
    run = lambda config: evaluate("int8", "CTC", config, lambda f, m: {"logits": ref},  # noqa: E731
                                  lambda f, m: {"logits": got}, batches).metrics["cer"]
    assert run({**CONFIG, "pad_token_id": 3}) == pytest.approx(50.0)  # [1, 1] vs [1]
    assert run(CONFIG) == pytest.approx(75.0)  # [3, 1, 3, 1] vs [1]


def test_zero_outputs_count_as_equal():
    zeros = lambda f, m: {"embeddings": np.zeros((2, 12), np.float32)}  # noqa: E731
    result = evaluate("int8", "XVector", CONFIG, zeros, zeros, BATCHES)
    assert result.passed and result.metrics["cosine"] == 1.0 and result.metrics["scaled_error"] == 0.0


def test_thresholds_per_head_and_precision():
    assert thresholds("int8", "CTC") == {"min_cosine": 0.98, "min_agreement": 0.95, "max_cer": 0.5,
                                         "max_scaled_error": 0.1}
    assert thresholds("fp16", "AudioFrameClassification") == {"min_cosine": 0.999, "min_agreement": 0.99,
                                                              "max_scaled_error": 5e-3}
    assert thresholds("int4", "Model") == {"min_cosine": 0.95, "max_scaled_error": 0.25}


def test_override_refusals_name_what_is_allowed():
    from runtime.errors import OptionError

    known = "['max_cer', 'max_scaled_error', 'min_agreement', 'min_cosine'] and PRECISION in ['bf16', 'fp16', " \
            "'int4', 'int8', 'int8-qdq']"
    for item in ("bogus=1", "max_cer", "fp8.max_cer=1"):
        with pytest.raises(OptionError) as caught:
            parse_overrides([item])
        assert str(caught.value) == f"gate override {item!r} is not [PRECISION.]KEY=VALUE with KEY in {known}"
    with pytest.raises(OptionError) as caught:
        parse_overrides(["int8.max_cer=low"])
    assert str(caught.value) == "gate override 'int8.max_cer=low': 'low' is not a number"
    assert parse_overrides(["int8-qdq.max_cer=2", "min_cosine=0.5"]) == {"int8-qdq": {"max_cer": 2.0},
                                                                       "*": {"min_cosine": 0.5}}
    assert parse_overrides(None) == {} and parse_overrides([]) == {}
    with pytest.raises(OptionError) as caught:
        thresholds("int8", "XVector", parse_overrides(["int8.max_cer=1", "min_agreement=0"]))
    assert str(caught.value) == ("gate override min_agreement does not apply to the int8 gate of the XVector head; its "
                                 "thresholds are max_scaled_error, min_cosine")


def test_gate_row_text():
    assert GateRow("cer", 0.25, 0.5, 1).row() == f"{'cer':<14} {'0.25':<12}{'':<26} {'<= 0.5':<10} ok"
    row = GateRow("cosine", 0.97, 0.98, -1, recorded=0.99)
    assert row.row() == f"{'cosine':<14} {'0.97':<12}{' (at export 0.99)':<26} {'>= 0.98':<10} FAIL"
    assert GateRow("cer", 0.5, 0.5, 1).ok and GateRow("cosine", 0.98, 0.98, -1).ok  # bounds are inclusive


def test_report_of_a_passing_gate():
    result = evaluate("int8", "CTC", CONFIG, reference, reference, BATCHES)
    assert result.report().splitlines()[0] == "int8 accuracy gate passed:"
    assert "FAIL" not in result.report()


def test_bounds_are_inclusive_when_judged():
    limits = {"max_cer": 0.0, "min_agreement": 1.0, "min_cosine": 1.0, "max_scaled_error": 0.0}
    assert evaluate("int8", "CTC", CONFIG, reference, reference, BATCHES, limits=limits).passed


def test_cer_of_one_reference_token():
    ref = np.stack([_frames([0, 3, 0, 0])])  # greedy: [3]
    got = np.stack([_frames([0, 0, 0, 0])])  # nothing
    batches = [(np.zeros((1, 4, 160), np.float32), np.ones((1, 4), np.int64))]
    result = evaluate("int8", "CTC", CONFIG, lambda f, m: {"logits": ref}, lambda f, m: {"logits": got}, batches)
    assert result.metrics["cer"] == 100.0


def test_all_zero_references_scale_by_one():
    zeros = np.zeros((2, 12), np.float32)
    small = zeros.copy()
    small[0, 0] = 0.04
    result = evaluate("int8", "XVector", CONFIG, lambda f, m: {"embeddings": zeros}, lambda f, m: {"embeddings": small},
                      BATCHES)
    assert result.metrics["scaled_error"] == pytest.approx(0.04) and result.metrics["max_abs"] == pytest.approx(0.04)


def test_utterance_level_heads_are_judged_on_their_whole_output():
    """An XVector embedding wider than the utterance is long in frames is not cut to the frame count."""
    batches = [(np.zeros((2, 30, 160), np.float32), np.ones((2, 30), np.int64))]
    base = np.ones((2, 64), np.float32)
    tail = base.copy()
    tail[:, 30:] = -1.0  # equal over the first 30 values only
    result = evaluate("int8", "XVector", CONFIG, lambda f, m: {"embeddings": base}, lambda f, m: {"embeddings": tail},
                      batches)
    assert result.metrics["cosine"] == pytest.approx((30 - 34) / 64) and not result.passed


def test_sequence_classification_agreement_is_top1_per_utterance():
    batches = [(np.zeros((3, 20, 160), np.float32), np.ones((3, 20), np.int64))]
    ref = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]], np.float32)
    got = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.1, 2.0]], np.float32)
    result = evaluate("int8", "SequenceClassification", CONFIG, lambda f, m: {"logits": ref},
                      lambda f, m: {"logits": got}, batches)
    assert result.metrics["agreement"] == pytest.approx(2 / 3) and "cer" not in result.metrics


def test_override_messages_name_every_unknown_key_and_the_head_only_when_given():
    from exporter.quantize.gates import with_overrides
    from runtime.errors import OptionError

    with pytest.raises(OptionError) as caught:
        with_overrides({"min_cosine": 0.9}, "int8", {"*": {"max_cer": 1.0, "min_agreement": 0.5}})
    assert str(caught.value) == ("gate override max_cer, min_agreement does not apply to the int8 gate; its "
                                 "thresholds are min_cosine")
    with pytest.raises(OptionError) as caught:
        parse_overrides(["int8.max_cer==1"])
    assert str(caught.value) == "gate override 'int8.max_cer==1': '=1' is not a number"
