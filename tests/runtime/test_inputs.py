"""runtime.inputs, the checks every Session call makes, on their own: what each accepts, what it
returns, and the exact message of each refusal (messages are part of the contract: users read them)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.inputs import check_attention_memory, check_features, check_mask, check_waveform, is_whole


def refused(call, message: str):
    """The call raises InputError whose whole message is `message`."""
    with pytest.raises(InputError) as caught:
        call()
    assert str(caught.value) == message


def test_is_whole_takes_integers_but_not_bools():
    assert is_whole(3) and is_whole(np.int64(3)) and is_whole(np.uint8(0))
    assert not is_whole(True) and not is_whole(3.0) and not is_whole("3") and not is_whole(None)


def test_check_features_returns_contiguous_float32_of_the_same_values():
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)[:, ::-1]  # float64, negative stride
    out = check_features(x, 4)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, x.astype(np.float32))
    listed = check_features(x.tolist(), 4)  # nested lists are arrays too
    np.testing.assert_array_equal(listed, out)


@pytest.mark.parametrize("value,message", [
    (np.zeros((3, 4)),
     "input_features must have rank 3 [batch, frames, 4], got shape (3, 4) (add a batch axis: x[None])"),
    (np.zeros((1, 2, 3, 4)), "input_features must have rank 3 [batch, frames, 4], got shape (1, 2, 3, 4)"),
    (np.zeros((1, 3, 4), np.int16), "input_features must be floating point (float32 expected), got int16; integer "
                                    "audio must go through the FeatureExtractor first"),
    (np.zeros((1, 3, 5), np.float32),
     "input_features last axis must be 4 (80 mel bins x stride 2), got shape (1, 3, 5)"),
    (np.zeros((0, 3, 4), np.float32), "input_features is empty: shape (0, 3, 4)"),
    (np.zeros((1, 0, 4), np.float32), "input_features is empty: shape (1, 0, 4)"),
    (np.array([[[0, 0, np.nan, 0], [np.inf, 0, 0, 0]]]), "input_features holds 2 NaN/Inf values (first at (0, 0, 2)); "
                                                          "the model would return garbage"),
    (np.full((1, 1, 4), 1e39), "input_features holds 4 NaN/Inf values (first at (0, 0, 0)); the model would return "
                               "garbage"),  # beyond float32's range
    ("features", "input_features must be a numpy array, got str"),
    ([[[1.0, 2.0]], [[1.0]]], None),  # ragged lists cannot be an array
])
def test_check_features_refusals(value, message):
    if message is None:
        with pytest.raises(InputError, match="^input_features cannot be read as an array: "):
            check_features(value, 2)
        return
    refused(lambda: check_features(value, 4), message)


def test_check_mask_accepts_right_padded_masks_of_any_integer_or_bool_dtype():
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    for dtype in (np.int64, np.int32, np.uint8, np.bool_):
        out = check_mask(mask.astype(dtype), 2, 4, 2)
        assert out.dtype == np.int64 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, mask)
    full = check_mask(None, 2, 4, 4)
    assert full.dtype == np.int64 and full.shape == (2, 4) and full.all()


@pytest.mark.parametrize("mask,message", [
    (None, "input has 3 frames; this model needs at least 4"),
    (np.ones((2, 3), np.float32), "attention_mask must be integer or bool (1 = real frame), got float32"),
    (np.ones((2, 4), np.int64), "attention_mask shape (2, 4) does not match input_features [batch, frames] = (2, 3)"),
    (np.ones((1, 3), np.int64), "attention_mask shape (1, 3) does not match input_features [batch, frames] = (2, 3)"),
    (np.array([[1, 1, 2], [1, 1, 1]]), "attention_mask must hold only 0 and 1, got values in [1, 2]"),
    (np.array([[1, 1, 1], [-1, 1, 1]]), "attention_mask must hold only 0 and 1, got values in [-1, 1]"),
    (np.array([[1, 1, 1], [1, 0, 1]]),
     "attention_mask row 1 is not right-padded (1s then 0s); pad utterances at the end"),
    (np.array([[0, 1, 1], [1, 1, 1]]),
     "attention_mask row 0 is not right-padded (1s then 0s); pad utterances at the end"),
])
def test_check_mask_refusals(mask, message):
    refused(lambda: check_mask(mask, 2, 3, 4 if mask is None else 1), message)


def test_check_mask_names_the_first_utterance_too_short():
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    refused(lambda: check_mask(mask, 3, 4, 3),
            "utterance 1 has 2 real frames; this model needs at least 3 (audio too short)")
    np.testing.assert_array_equal(check_mask(mask, 3, 4, 1), mask)  # a minimum of 1 takes them all
    refused(lambda: check_mask(np.zeros((1, 4), np.int64), 1, 4, 1),
            "utterance 0 has 0 real frames; this model needs at least 1 (audio too short)")


def test_check_waveform_returns_a_batch_and_its_lengths():
    wave, lengths = check_waveform(np.zeros(700, np.float64), None, 600)  # 1-D: one utterance
    assert wave.shape == (1, 700) and wave.dtype == np.float32 and lengths.tolist() == [700]
    assert lengths.dtype == np.int64
    batch = np.zeros((3, 900), np.float16)
    wave, lengths = check_waveform(batch, None, 600)
    assert wave.shape == (3, 900) and wave.dtype == np.float32 and lengths.tolist() == [900] * 3
    wave, lengths = check_waveform(batch, np.array([900, 600, 700], np.int32), 600)
    assert lengths.dtype == np.int64 and lengths.tolist() == [900, 600, 700] and lengths.flags.c_contiguous


@pytest.mark.parametrize("wave,lengths,message", [
    (np.zeros((1, 1, 900), np.float32), None,
     "waveform must be float [batch, samples], got shape (1, 1, 900) dtype float32"),
    (np.zeros((2, 900), np.int16), None, "waveform must be float [batch, samples], got shape (2, 900) dtype int16"),
    (np.r_[np.zeros(899), np.nan][None], None, "waveform holds NaN/Inf samples"),
    (np.zeros((2, 900)), np.array([900.0, 900.0]), "lengths must be integers of shape (2,), got float64 (2,)"),
    (np.zeros((2, 900)), np.array([900]), "lengths must be integers of shape (2,), got int64 (1,)"),
    (np.zeros((2, 900)), np.array([901, 900]),
     "lengths must lie in [600, 900] samples, got [900, 901] (audio too short, or lengths beyond the padded batch)"),
    (np.zeros((2, 900)), np.array([599, 900]),
     "lengths must lie in [600, 900] samples, got [599, 900] (audio too short, or lengths beyond the padded batch)"),
    (np.zeros((1, 500)), None, "lengths must lie in [600, 500] samples, got [500, 500] (audio too short, or lengths "
                               "beyond the padded batch)"),
    ("wave.wav", None, "waveform must be a numpy array, got str"),
    (np.zeros((1, 900)), "900", "lengths must be a numpy array, got str"),
])
def test_check_waveform_refusals(wave, lengths, message):
    refused(lambda: check_waveform(wave, lengths, 600), message)


def test_attention_memory_guard_counts_batch_heads_and_frames_squared():
    check_attention_memory(2, 1000, 4, 2 * 4 * 1000 * 1000 * 4)  # exactly at the limit: allowed
    refused(lambda: check_attention_memory(2, 1000, 4, 2 * 4 * 1000 * 1000 * 4 - 1),
            "input of batch 2 x 1000 frames needs ~0.0 GiB for attention scores per layer (limit 0.0 GiB, "
            "Session(max_attention_bytes=...)); split it, or use transcribe / infer, which chunk long audio")
    with pytest.raises(InputError, match=re.escape("needs ~23.8 GiB for attention scores per layer (limit 4.0 GiB")):
        check_attention_memory(1, 40_000, 4, 4 * 2 ** 30)


def test_float64_beyond_float32_is_refused_as_inf_without_a_numpy_warning():
    """The cast to float32 overflows on purpose (the Inf is then reported); numpy must not warn about it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = "input_features holds 8000 NaN/Inf values (first at (0, 0, 0))"
        with pytest.raises(InputError, match=re.escape(message)):
            check_features(np.full((1, 50, 160), 1e300), 160)


def test_a_mask_that_is_no_array_is_named_attention_mask():
    with pytest.raises(InputError, match="^attention_mask must be a numpy array, got str$"):
        check_mask("abc", 1, 50, 1)
    with pytest.raises(InputError, match="^attention_mask cannot be read as an array: "):
        check_mask([[1, 1], [1]], 2, 2, 1)


def test_missing_waveform_lengths_are_int64_full_lengths():
    _, lengths = check_waveform(np.zeros((2, 4000), np.float32), None, 400)
    assert lengths.dtype == np.int64 and lengths.tolist() == [4000, 4000]


def test_objects_exposing_array_are_read_as_arrays():
    """What torch tensors, xarray and pandas objects offer: __array__, without being lists or ndarrays."""

    class Exposes:
        def __init__(self, value):
            self.value = value

        def __array__(self, dtype=None, copy=None):
            return np.asarray(self.value, dtype=dtype)

    x = np.ones((1, 50, 160), np.float32)
    np.testing.assert_array_equal(check_features(Exposes(x), 160), x)
    np.testing.assert_array_equal(check_mask(Exposes(np.ones((1, 50), np.int64)), 1, 50, 1), np.ones((1, 50)))
