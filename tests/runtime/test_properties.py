"""Property-based tests: any input either gives a correct, finite result or the package's own error.

Inputs come from hypothesis: random ranks, shapes, dtypes, NaN/Inf, empty arrays, masks that
disagree with the features or are all zero, non-contiguous and read-only views, huge lengths.
A "correct" result for an accepted input equals the result for its canonical form (C-contiguous
float32 features, int64 mask), which the fixed-input parity tests tie to the PyTorch reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from exporter.export import export
from runtime import FeatureExtractor, Session
from runtime.errors import W2VBertError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int16, np.int64, np.bool_, np.complex64,
                          np.uint8])


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return Session(export(None, tmp_path_factory.mktemp("p") / "art"))


def _finite_or_not(dtype):
    if np.dtype(dtype).kind == "f":
        return st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(dtype).itemsize * 8)
    return None


@st.composite
def feature_inputs(draw):
    rank = draw(st.integers(0, 4))
    shape = [draw(st.integers(0, 70)) for _ in range(rank)]
    if rank == 3 and draw(st.booleans()):
        shape[2] = 160  # often the right feature size, so the mask checks get exercised
    dtype = draw(DTYPES)
    x = draw(hnp.arrays(dtype, shape, elements=_finite_or_not(dtype) if draw(st.booleans()) else None))
    mask = None
    if draw(st.booleans()) and rank >= 2:
        b, t = shape[0], shape[1]
        kind = draw(st.sampled_from(["right", "zeros", "random", "wrong_shape", "float", "values"]))
        lengths = np.array([draw(st.integers(0, t)) for _ in range(b)], dtype=np.int64)
        mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int64)
        if kind == "zeros":
            mask[:] = 0
        elif kind == "random":
            mask = draw(hnp.arrays(np.int64, (b, t), elements=st.integers(0, 1)))
        elif kind == "wrong_shape":
            mask = np.ones((b, t + 1), np.int64)
        elif kind == "float":
            mask = mask.astype(np.float32)
        elif kind == "values":
            mask = mask * 2
    if draw(st.booleans()) and x.ndim >= 1 and x.shape[-1] > 1:
        x = x[..., ::-1]  # non-contiguous view
    if draw(st.booleans()):
        x.setflags(write=False)
    return x, mask


@SETTINGS
@given(feature_inputs())
def test_session_run_gives_result_or_package_error(session, case):
    x, mask = case
    try:
        out = session.run(x, mask)
    except W2VBertError:
        return
    canonical = np.ascontiguousarray(x, dtype=np.float32)
    full = np.ones(canonical.shape[:2], np.int64) if mask is None else np.asarray(mask, np.int64)
    expected = session.run(canonical, full)
    assert set(out) == {"logits"} and np.isfinite(out["logits"]).all()
    np.testing.assert_array_equal(out["logits"], expected["logits"])


def test_session_refuses_huge_lengths_before_running(session):
    x = np.zeros((1, 40_000, 160), np.float32)  # 13 min in one call: ~24 GiB of attention scores
    with pytest.raises(W2VBertError, match="GiB for attention scores"):
        session.run(x)


@st.composite
def waveforms(draw):
    rank = draw(st.integers(0, 3))
    shape = [draw(st.integers(0, 3))] * (rank - 1) + ([draw(st.integers(0, 3000))] if rank else [])
    dtype = draw(DTYPES)
    elements = _finite_or_not(dtype) if draw(st.booleans()) else None
    wave = draw(hnp.arrays(dtype, shape, elements=elements))
    if draw(st.booleans()) and wave.ndim:
        wave = wave[..., ::-1]
    return wave


@SETTINGS
@given(waveforms())
def test_feature_extractor_gives_result_or_package_error(wave):
    extractor = FeatureExtractor()
    try:
        features, mask = extractor(wave)
    except W2VBertError:
        return
    assert features.dtype == np.float32 and features.ndim == 3 and features.shape[2] == 160
    assert np.isfinite(features).all()
    assert mask.shape == features.shape[:2] and set(np.unique(mask)) <= {0, 1}


@SETTINGS
@given(st.lists(waveforms(), min_size=0, max_size=3))
def test_transcribe_gives_text_or_package_error(session, waves):
    try:
        texts = session.transcribe(waves if len(waves) != 1 else waves[0])
    except W2VBertError:
        return
    assert isinstance(texts, list) and all(isinstance(t, str) for t in texts)
    assert len(texts) == max(1, len(waves))
