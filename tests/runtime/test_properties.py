"""Property-based tests: a valid input gives the result of its canonical form; an invalid one the
package's own error naming the defect.

Valid inputs are generated on purpose (any float dtype, frames at or above the model's minimum,
right-padded masks of any integer or bool dtype, non-contiguous and read-only views), and every
example must reach the assertions: a bug that refused valid input fails here instead of passing as
"an error was raised". Invalid inputs are generated one defect at a time, each with the words its
error must contain. A "correct" result equals the result for the canonical form (C-contiguous
float32 features, int64 mask, float32 waves), which the fixed-input parity tests tie to the PyTorch
reference.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from exporter.export import export
from runtime import FeatureExtractor, Session
from runtime.errors import InputError
from runtime.features import MIN_SAMPLES

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])
FLOATS = st.sampled_from([np.float16, np.float32, np.float64])
MASK_DTYPES = st.sampled_from([np.int64, np.int32, np.uint8, np.bool_])
MIN_EXAMPLES = 40  # hypothesis may stop early on a small space, never this early
DEFECT_EXAMPLES = 12
DEFECT_SETTINGS = settings(SETTINGS, max_examples=DEFECT_EXAMPLES)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return Session(export(None, tmp_path_factory.mktemp("p") / "art"))


def _views(draw, x: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous and / or read-only array, sometimes."""
    if draw(st.booleans()) and x.ndim and x.shape[-1] > 1:
        x = np.ascontiguousarray(x[..., ::-1])[..., ::-1]  # equal values, negative stride
    if draw(st.booleans()):
        x = x.copy()
        x.setflags(write=False)
    return x


@st.composite
def valid_features(draw, min_frames: int):
    batch, frames = draw(st.integers(1, 3)), draw(st.integers(min_frames, 70))
    x = draw(hnp.arrays(draw(FLOATS), (batch, frames, 160), elements=st.floats(-8, 8, width=16)))
    mask = None
    if draw(st.booleans()):
        lengths = [draw(st.integers(min_frames, frames)) for _ in range(batch)]
        mask = (np.arange(frames)[None, :] < np.array(lengths)[:, None]).astype(draw(MASK_DTYPES))
    return _views(draw, x), mask


def test_valid_features_give_the_result_of_their_canonical_form(session):
    seen = Counter()

    @SETTINGS
    @given(valid_features(session.min_frames))
    def check(case):
        seen["drawn"] += 1
        x, mask = case
        out = session.run(x, mask)  # a valid input must not be refused
        canonical = np.ascontiguousarray(x, dtype=np.float32)
        full = np.ones(canonical.shape[:2], np.int64) if mask is None else np.asarray(mask, np.int64)
        expected = session.run(canonical, full)
        assert set(out) == {"logits"} and np.isfinite(out["logits"]).all()
        np.testing.assert_array_equal(out["logits"], expected["logits"])
        seen["checked"] += 1

    check()
    assert seen["drawn"] >= MIN_EXAMPLES and seen["checked"] == seen["drawn"], seen


INVALID_FEATURES = {
    "rank": "must have rank 3",
    "feature size": "last axis must be 160",
    "integer dtype": "must be floating point",
    "empty": "is empty",
    "NaN or Inf": "NaN/Inf values",
    "mask shape": "does not match input_features",
    "mask values": "must hold only 0 and 1",
    "mask dtype": "must be integer or bool",
    "mask not right-padded": "is not right-padded",
    "too few real frames": "real frames; this model needs at least",
}


@st.composite
def invalid_features(draw, defect: str):
    """(features, mask): a valid input with exactly the one thing wrong that `defect` names."""
    batch, frames = draw(st.integers(1, 3)), draw(st.integers(8, 40))
    x = np.asarray(draw(hnp.arrays(np.float32, (batch, frames, 160), elements=st.floats(-4, 4, width=32))))
    mask = np.ones((batch, frames), np.int64)
    if defect == "rank":
        x = x[0] if draw(st.booleans()) else x[None]
    elif defect == "feature size":
        x = x[..., : draw(st.sampled_from([1, 80, 159]))]
    elif defect == "integer dtype":
        x = x.astype(draw(st.sampled_from([np.int16, np.int64, np.bool_])))
    elif defect == "empty":
        x = x[:0] if draw(st.booleans()) else x[:, :0]
        mask = None
    elif defect == "NaN or Inf":
        x = x.copy()
        x[draw(st.integers(0, batch - 1)), draw(st.integers(0, frames - 1)), draw(st.integers(0, 159))] = \
            draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif defect == "mask shape":
        mask = np.ones((batch, frames + draw(st.sampled_from([-1, 1]))), np.int64)
    elif defect == "mask values":
        mask = mask * draw(st.sampled_from([2, -1]))
    elif defect == "mask dtype":
        mask = mask.astype(draw(st.sampled_from([np.float32, np.float64])))
    elif defect == "mask not right-padded":
        mask[draw(st.integers(0, batch - 1)), 0] = 0  # a gap at the start of a row
    elif defect == "too few real frames":
        mask[draw(st.integers(0, batch - 1)), :] = 0
    return x, mask


@pytest.mark.parametrize("defect", sorted(INVALID_FEATURES))
def test_each_invalid_feature_input_gets_the_error_naming_its_defect(session, defect):
    seen = Counter()

    @DEFECT_SETTINGS
    @given(invalid_features(defect))
    def check(case):
        x, mask = case
        with pytest.raises(InputError, match=re.escape(INVALID_FEATURES[defect])):
            session.run(x, mask)
        seen["refused"] += 1

    check()
    assert seen["refused"] >= DEFECT_EXAMPLES // 2, seen


def test_session_refuses_huge_lengths_before_running(session):
    x = np.zeros((1, 40_000, 160), np.float32)  # 13 min in one call: ~24 GiB of attention scores
    with pytest.raises(InputError, match="GiB for attention scores"):
        session.run(x)


@st.composite
def wave(draw, length: int | None = None):
    n = length if length is not None else draw(st.integers(MIN_SAMPLES, 3000))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64, np.int16]))
    if dtype == np.int16:
        samples = draw(hnp.arrays(np.int16, n))
    else:
        samples = draw(hnp.arrays(dtype, n, elements=st.floats(-1, 1, width=16)))
    return _views(draw, np.asarray(samples))


@st.composite
def valid_audio(draw):
    """(audio as given, its utterances as canonical float32 waves)."""
    form = draw(st.sampled_from(["1-D", "list", "2-D batch"]))
    if form == "1-D":
        one = draw(wave())
        return one, [one]
    if form == "list":
        waves = draw(st.lists(wave(), min_size=1, max_size=3))
        return waves, waves
    n = draw(st.integers(MIN_SAMPLES, 2000))
    batch = np.stack([draw(wave(n)) for _ in range(draw(st.integers(1, 3)))])
    return batch, list(batch)


def _canonical(w: np.ndarray) -> np.ndarray:
    return w.astype(np.float32) / 32768.0 if w.dtype == np.int16 else np.ascontiguousarray(w, np.float32)


def test_valid_audio_gives_the_features_and_texts_of_its_canonical_form(session):
    seen = Counter()
    extractor = FeatureExtractor()

    @SETTINGS
    @given(valid_audio())
    def check(case):
        seen["drawn"] += 1
        audio, utterances = case
        features, mask = extractor(audio)
        expected_features, expected_mask = extractor([_canonical(w) for w in utterances])
        assert features.dtype == np.float32 and features.shape[0] == len(utterances) and features.shape[2] == 160
        assert np.isfinite(features).all() and set(np.unique(mask)) <= {0, 1}
        np.testing.assert_array_equal(features, expected_features)
        np.testing.assert_array_equal(mask, expected_mask)
        texts = session.transcribe(audio)
        assert texts == session.transcribe([_canonical(w) for w in utterances]) and len(texts) == len(utterances)
        seen["checked"] += 1

    check()
    assert seen["drawn"] >= MIN_EXAMPLES and seen["checked"] == seen["drawn"], seen


INVALID_AUDIO = {
    "rank 0 or 3": "expected (samples,) or a batch",
    "not an array": "must be a numpy array or a list of arrays",
    "not float": "expected float samples in [-1, 1] or int16 PCM",
    "too short": "are needed",
    "NaN or Inf": "NaN/Inf samples",
    "2-D inside a list": "one utterance is 1-D samples",
    "empty list": "no audio given",
    "(samples, channels)": "looks like (samples, channels)",
}


@st.composite
def invalid_audio(draw, defect: str):
    good = np.asarray(draw(hnp.arrays(np.float32, draw(st.integers(MIN_SAMPLES, 2000)),
                                      elements=st.floats(-1, 1, width=32))))
    if defect == "rank 0 or 3":
        return np.array(good[0]) if draw(st.booleans()) else good[None, None]
    if defect == "not an array":
        return draw(st.sampled_from([np.float32(0.5), 0.5, "audio.wav", {"array": good}]))
    if defect == "not float":
        return [good.astype(draw(st.sampled_from([np.int32, np.int64, np.bool_, np.complex64])))]
    if defect == "too short":
        return [good[: draw(st.integers(0, MIN_SAMPLES - 1))]]
    if defect == "NaN or Inf":
        bad = good.copy()
        bad[draw(st.integers(0, len(bad) - 1))] = draw(st.sampled_from([np.nan, np.inf]))
        return [bad]
    if defect == "2-D inside a list":
        return [np.stack([good, good])]
    if defect == "empty list":
        return []
    return np.stack([good, good], axis=1)  # (samples, 2)


@pytest.mark.parametrize("defect", sorted(INVALID_AUDIO))
def test_each_invalid_audio_input_gets_the_error_naming_its_defect(session, defect):
    seen = Counter()
    extractor = FeatureExtractor()

    @DEFECT_SETTINGS
    @given(invalid_audio(defect))
    def check(audio):
        with pytest.raises(InputError, match=re.escape(INVALID_AUDIO[defect])):
            extractor(audio)
        if defect != "not an array":  # a path or a string is what transcribe reads as a file
            with pytest.raises(InputError, match=re.escape(INVALID_AUDIO[defect])):
                session.transcribe(audio)
        seen["refused"] += 1

    check()
    assert seen["refused"] >= DEFECT_EXAMPLES // 2, seen
