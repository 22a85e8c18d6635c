"""The numba front end's own pieces: its FFT, group boundaries, and what happens without numba."""

from __future__ import annotations

import logging
import pickle
import sys

import numpy as np
import pytest

from runtime.errors import DependencyError
from runtime.features import FRAME_LENGTH, HOP_LENGTH, FeatureExtractor

pytest.importorskip("numba", reason="numba is not installed")
from runtime import fbank_numba  # noqa: E402 - after the skip; an import error here must fail, not skip


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
    where = np.unravel_index(np.abs(got - expected).argmax(), got.shape)
    assert err <= 1e-5, f"log-mel differs by {err:.2e} at frame {where}"


def test_without_numba_the_numpy_front_end_runs(monkeypatch, caplog):
    numba_extractor = FeatureExtractor()
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "runtime.fbank_numba")
    with caplog.at_level(logging.DEBUG, logger="w2vbert"):
        assert not FeatureExtractor().compiled
    assert "numba front end unavailable (import of numba halted" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # not installed: nothing to warn about
    with pytest.raises(DependencyError, match="use_numba=True but the numba front end is unavailable"):
        FeatureExtractor(use_numba=True)
    # A pickled extractor chooses its front end again where it is loaded.
    wave = np.random.default_rng(2).standard_normal(8000).astype(np.float32) * 0.1
    clone = pickle.loads(pickle.dumps(numba_extractor))
    assert not clone.compiled
    np.testing.assert_allclose(clone(wave)[0], numba_extractor(wave)[0], atol=1e-5)


def test_a_numba_that_fails_falls_back_with_a_warning(monkeypatch, caplog):
    # e.g. llvmlite refused executable memory (OSError), a numba that cannot compile the kernel, a corrupt cache.
    def broken(*_args):
        raise OSError(13, "Permission denied: cannot map executable memory")

    monkeypatch.setattr(fbank_numba, "CompiledFbank", broken)
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        extractor = FeatureExtractor()
    assert not extractor.compiled
    assert "numba front end unavailable (PermissionError: [Errno 13] Permission denied" in caplog.text
    with pytest.raises(DependencyError, match="PermissionError"):
        FeatureExtractor(use_numba=True)
    assert FeatureExtractor(use_numba=0)._compiled is None  # any false value means numpy


def test_constants_changed_in_fbank_constants_disable_the_kernel(monkeypatch, caplog):
    # numba's cache would keep the old value compiled in; the import refuses instead.
    from runtime import fbank_constants

    monkeypatch.setattr(fbank_constants, "PREEMPHASIS", 0.95)
    monkeypatch.delitem(sys.modules, "runtime.fbank_numba")
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        assert not FeatureExtractor().compiled
    assert "'PREEMPHASIS': 0.95" in caplog.text


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


def test_every_sample_array_flavour_runs_the_one_compiled_kernel():
    # numba compiles (~5 s) and caches a kernel per array flavour; the extractor hands it one flavour only.
    wave = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    extractor = FeatureExtractor(use_numba=True)
    expected = extractor(wave)[0]
    read_only = wave.copy()
    read_only.flags.writeable = False
    unaligned = np.frombuffer(bytearray(b"\0" + wave.tobytes()), dtype=np.float32, offset=1)
    assert unaligned.flags.writeable and not unaligned.flags.aligned
    for variant in (read_only, unaligned, wave.astype(">f4"), wave.astype(np.float64)):
        np.testing.assert_array_equal(extractor.fbank([variant])[0], extractor.fbank([wave])[0])
        np.testing.assert_array_equal(extractor(variant)[0], expected)
    assert len(fbank_numba.mel_energies.signatures) == 1, fbank_numba.mel_energies.signatures
