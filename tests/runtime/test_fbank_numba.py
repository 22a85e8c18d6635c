"""The numba front end's own pieces: its FFT, group boundaries, and what happens without numba."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from runtime.errors import DependencyError
from runtime.features import FRAME_LENGTH, HOP_LENGTH, FeatureExtractor

fbank_numba = pytest.importorskip("runtime.fbank_numba", reason="numba is not installed")


def test_fft512_matches_numpy_on_every_lane():
    rng = np.random.default_rng(0)
    lanes = fbank_numba.LANES
    signals = rng.standard_normal((lanes, 512)) * 10.0 ** rng.uniform(-6, 6, (lanes, 1)) \
        + 1j * rng.standard_normal((lanes, 512))
    ws = np.empty((2, 512, lanes))
    ws[0], ws[1] = signals.real.T, signals.imag.T
    fbank_numba.fft512(ws.reshape(-1), *fbank_numba.twiddles(), lanes)
    got = (ws[0] + 1j * ws[1])[fbank_numba.digit_reversal()].T
    expected = np.fft.fft(signals, axis=1)
    rel = np.abs(got - expected).max(axis=1) / np.abs(expected).max(axis=1)
    assert rel.max() < 1e-14, f"relative error per lane {rel}"


@pytest.mark.parametrize("frames", list(range(2, 19)) + [301])
def test_group_boundaries_match_the_numpy_front_end(frames):
    # 8 frames per group, frame l and l + 4 sharing a complex FFT: every partial group, and frames
    # with very different loudness side by side.
    rng = np.random.default_rng(frames)
    wave = rng.standard_normal(FRAME_LENGTH + (frames - 1) * HOP_LENGTH) * 0.1
    wave *= 10.0 ** rng.uniform(-4, 0, len(wave) // HOP_LENGTH + 1).repeat(HOP_LENGTH)[:len(wave)]
    wave = wave.astype(np.float32)
    ours, reference = FeatureExtractor(use_numba=True), FeatureExtractor(use_numba=False)
    got, expected = ours._logmel(wave), reference._logmel(wave)
    assert got.shape == expected.shape == (frames, 80)
    err = np.abs(got - expected).max()
    assert err <= 1e-5, f"log-mel differs by {err:.2e} at frame {np.unravel_index(np.abs(got - expected).argmax(), got.shape)}"


def test_without_numba_the_numpy_front_end_runs(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "runtime.fbank_numba")
    assert not FeatureExtractor().compiled
    with pytest.raises(DependencyError, match="use_numba=True but numba cannot be imported"):
        FeatureExtractor(use_numba=True)


def test_kernels_compile_without_a_cache_location(monkeypatch):
    # A read-only install without a home directory: numba refuses cache=True at decoration time.
    real = fbank_numba.numba.njit

    def refusing(*args, cache=False, **kwargs):
        if cache:
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return real(*args, **kwargs)

    monkeypatch.setattr(fbank_numba.numba, "njit", refusing)

    @fbank_numba._jit()
    def twice(x):
        return 2.0 * x

    assert twice(1.5) == 3.0


def test_read_only_and_unaligned_samples_give_the_same_features():
    wave = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    expected = FeatureExtractor(use_numba=True)(wave)[0]
    read_only = wave.copy()
    read_only.flags.writeable = False
    unaligned = np.frombuffer(b"\0" + wave.tobytes(), dtype=np.float32, offset=1)
    assert not unaligned.flags.aligned
    for variant in (read_only, unaligned):
        np.testing.assert_array_equal(FeatureExtractor(use_numba=True)(variant)[0], expected)
