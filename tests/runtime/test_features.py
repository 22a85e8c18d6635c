"""FeatureExtractor vs transformers' SeamlessM4TFeatureExtractor on real (synthetic) speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from exporter.parity.compare import tolerance
from runtime import features
from runtime.audio import load_audio
from runtime.errors import InputError
from runtime.features import BLOCK, FRAME_LENGTH, HOP_LENGTH, MIN_SAMPLES, FeatureExtractor
from tests.conftest import FIXTURE

SAMPLES = sorted((FIXTURE / "samples").glob("*.wav"))


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    return transformers.SeamlessM4TFeatureExtractor()


@pytest.fixture(scope="module")
def speech():
    assert len(SAMPLES) >= 4, "the fixture ships its sample wavs"
    return [load_audio(p) for p in SAMPLES]


@pytest.fixture(params=["numba", "numpy"])
def make(request):
    """FeatureExtractor factory for each front end: the numba kernels (default when numba is installed), numpy."""
    if request.param == "numba":
        pytest.importorskip("numba", reason="numba is not installed: only the numpy front end can be tested")
    use_numba = request.param == "numba"

    def build(**kwargs):
        extractor = FeatureExtractor(use_numba=use_numba, **kwargs)
        assert extractor.compiled == use_numba
        return extractor
    return build


TOLERANCE = tolerance("features", "input_features")


def _compare(ours, theirs):
    features, mask = ours
    assert features.shape == theirs["input_features"].shape
    np.testing.assert_array_equal(mask, theirs["attention_mask"])
    err = np.abs(features - theirs["input_features"]).max()
    assert err <= TOLERANCE, f"max abs error {err:.2e} on normalised features (tolerance {TOLERANCE:g})"


def test_unbatched_speech_matches_transformers(hf, speech, make):
    for wave in speech:
        _compare(make()(wave), hf(wave, sampling_rate=16000, return_tensors="np"))


def test_batched_speech_of_different_lengths_matches_transformers(hf, speech, make):
    _compare(make()(speech), hf(speech, sampling_rate=16000, padding=True, return_tensors="np"))


@pytest.mark.parametrize("gain,offset", [(1e-3, 0.0), (0.05, 0.3), (1.0, -0.2), (3e-5, 0.0)],
                         ids=["quiet", "dc-offset", "loud-offset", "near-silent"])
def test_hard_signals_match_transformers(hf, speech, make, gain, offset):
    # Quiet frames and DC offsets are where reduced precision in framing / FFT shows first.
    wave = (np.concatenate(speech) * gain + offset).astype(np.float32)
    _compare(make()(wave), hf(wave, sampling_rate=16000, return_tensors="np"))


def test_digital_silence_next_to_loud_speech_matches_transformers(hf, speech, make):
    # The numba front end transforms two frames in one complex FFT; a silent frame paired with a loud
    # one must still come out at the mel floor, not at the loud frame's rounding noise.
    loud = np.clip(np.concatenate(speech[:2]) * 8.0, -1.0, 1.0)
    silence = np.zeros(16000 + 123, np.float32)
    wave = np.concatenate([silence, loud, silence, loud[:8000], silence]).astype(np.float32)
    _compare(make()(wave), hf(wave, sampling_rate=16000, return_tensors="np"))


@pytest.mark.parametrize("samples", [MIN_SAMPLES, MIN_SAMPLES + 159, 16000 * 3 + 77, 16000 * 30,
                                     (BLOCK - 1) * HOP_LENGTH + FRAME_LENGTH, BLOCK * HOP_LENGTH + FRAME_LENGTH],
                         ids=["shortest", "shortest+159", "3s", "30s", "one-block", "one-block+1"])
def test_lengths_and_odd_frame_counts(hf, make, samples):
    wave = (np.random.default_rng(samples).standard_normal(samples) * 0.05).astype(np.float32)
    _compare(make()(wave), hf(wave, sampling_rate=16000, return_tensors="np"))


def test_numpy_only_path_matches_transformers(hf, speech, monkeypatch):
    # Without scipy the per-frame DC removal runs in the time domain instead of as a BLAS
    # rank-1 update of the spectrum; a DC offset is where the two would part.
    monkeypatch.setattr(features, "_blas_rank1", lambda: None)
    wave = (np.concatenate(speech) * 0.05 + 0.3).astype(np.float32)
    _compare(FeatureExtractor(use_numba=False)(wave), hf(wave, sampling_rate=16000, return_tensors="np"))


def test_rejected_audio_leaves_the_extractor_usable(speech, make):
    # The numpy front end reuses block buffers between calls: NaN from a refused waveform must not leak
    # into the next (it would through the FFT buffer's zero padding if a pass ever wrote it with frame
    # values). The numba kernel allocates its workspace per call; checked all the same.
    extractor, wave = make(), speech[0]
    expected = make()(wave)[0]
    bad = wave.copy()
    bad[::7] = np.nan
    with pytest.raises(InputError, match="NaN/Inf"):
        extractor(bad)
    np.testing.assert_array_equal(extractor(wave)[0], expected)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_copied_extractor_after_use_matches_a_fresh_one(speech, make, how):
    import copy
    import pickle

    extractor = make()
    extractor(speech[0])  # fills the numpy front end's reused block buffers (the numba kernel keeps none)
    clone = pickle.loads(pickle.dumps(extractor)) if how == "pickle" else copy.deepcopy(extractor)
    assert clone.compiled == extractor.compiled
    for wave in speech[:2]:
        np.testing.assert_array_equal(clone(wave)[0], make()(wave)[0])


def test_numpy_1_fft_path_matches(speech, monkeypatch):
    # numpy < 2 has no rfft(out=): the spectrum is copied into the block buffer instead.
    expected = FeatureExtractor(use_numba=False)(speech)[0]
    monkeypatch.setattr(features, "_NUMPY_FFT_OUT", False)
    np.testing.assert_array_equal(FeatureExtractor(use_numba=False)(speech)[0], expected)


def test_one_extractor_shared_by_threads(speech, make):
    from concurrent.futures import ThreadPoolExecutor

    extractor = make()
    expected = [extractor(w)[0] for w in speech]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: extractor(speech[i % len(speech)])[0], range(4 * len(speech))))
    for i, got in enumerate(results):
        np.testing.assert_array_equal(got, expected[i % len(speech)])


def test_more_mel_bins_than_the_fft_resolves(speech, make, caplog):
    # 128 kaldi triangles at 512 points: one misses every FFT bin. transformers warns and turns
    # that constant bin into float32 rounding noise (-0.0030 after normalisation); ours is 0.
    transformers = pytest.importorskip("transformers")
    with pytest.warns(UserWarning, match="mel filter has all zero values"):
        theirs = transformers.SeamlessM4TFeatureExtractor(num_mel_bins=128, feature_size=128)
    with caplog.at_level("WARNING", logger="w2vbert"):
        extractor = make(num_mel_bins=128)
    assert "1 of 128 mel filters cover no FFT bin" in caplog.text
    empty = [int(b) for b in caplog.text.split("mel bins [")[1].split("]")[0].split(",")]
    (features, mask), expected = extractor(speech), theirs(speech, sampling_rate=16000, padding=True,
                                                           return_tensors="np")
    np.testing.assert_array_equal(mask, expected["attention_mask"])
    columns = np.arange(256).reshape(2, 128)  # stride-2 stacking: bin b sits at b and 128 + b
    constant = columns[:, empty].ravel()
    real = np.setdiff1d(np.arange(256), constant)
    err = np.abs(features[..., real] - expected["input_features"][..., real]).max()
    assert err <= TOLERANCE, f"max abs error {err:.2e} on normalised features"
    assert not features[..., constant][mask.astype(bool)].any()


def test_mel_bands_cover_every_filter_column():
    # The banded mel product must write every output column, empty bands included.
    filters = np.zeros((20, 12))
    filters[2:5, 0:3] = 1.0
    filters[9:14, 8:12] = 2.0  # columns 3..7 touch no row: the middle band of 3 has nothing in it
    power = np.random.default_rng(0).random((5, 20)).astype(np.float32)
    out = np.full((5, 12), np.nan, dtype=np.float32)
    bands = features._mel_bands(filters, 3)
    assert [(low, high) for _, _, low, high, _ in bands] == [(2, 5), (0, 0), (9, 14)]
    for first, last, low, high, band in bands:
        np.matmul(power[:, low:high], band.astype(np.float32), out=out[:, first:last])
    np.testing.assert_allclose(out, power @ filters.astype(np.float32), rtol=1e-6)


def test_int16_pcm_is_scaled_like_float(speech):
    wave = speech[0]
    pcm = np.round(np.clip(wave, -1, 1 - 2 ** -15) * 32768).astype(np.int16)
    a, _ = FeatureExtractor()(pcm)
    b, _ = FeatureExtractor()(pcm.astype(np.float32) / 32768)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_reads_preprocessor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text('{"sampling_rate": 16000, "stride": 2, "num_mel_bins": 80}')
    extractor = FeatureExtractor.from_file(tmp_path / "preprocessor_config.json")
    assert extractor.feature_dim == 160
    (tmp_path / "broken.json").write_text("{not json")
    for name in ("missing.json", "broken.json"):
        with pytest.raises(InputError, match=f"cannot read preprocessor parameters from .*{name}: "):
            FeatureExtractor.from_file(tmp_path / name)


@pytest.mark.parametrize("audio,needle", [
    (np.zeros(MIN_SAMPLES - 1, np.float32), f"at least {MIN_SAMPLES}"),
    (np.zeros(0, np.float32), "has 0 samples"),
    (np.full(4000, np.nan, np.float32), "NaN/Inf"),
    (np.r_[np.zeros(4000), np.inf].astype(np.float32), "NaN/Inf"),  # in the tail no frame reaches
    (np.zeros(4000, np.int32), "dtype int32"),
    (np.zeros((2, 2, 2, 4000), np.float32), r"shape \(2, 2, 2, 4000\); expected \(samples,\) or a batch"),
    ([], "empty list"),
    ("x", "numpy array"),
])
def test_bad_audio_is_named(make, audio, needle):
    with pytest.raises(InputError, match=needle):
        make()(audio)


def test_wrong_sampling_rate_is_refused():
    with pytest.raises(InputError, match="8000 Hz"):
        FeatureExtractor()(np.zeros(4000, np.float32), sampling_rate=8000)


def test_load_audio_resamples_and_takes_first_channel(tmp_path, speech):
    from scipy.signal import resample_poly

    wave = speech[0]
    stereo = np.stack([wave, np.zeros_like(wave)], axis=1)
    sf.write(tmp_path / "a.flac", resample_poly(stereo, 441, 160, axis=0), 44100)
    loaded = load_audio(tmp_path / "a.flac")
    assert abs(len(loaded) - len(wave)) <= 1
    n = min(len(loaded), len(wave))
    assert np.corrcoef(loaded[:n], wave[:n])[0, 1] > 0.99


@pytest.mark.parametrize("content,needle", [(b"", "cannot read"), (b"not audio at all" * 100, "cannot read")])
def test_load_audio_rejects_unreadable(tmp_path, content, needle):
    (tmp_path / "x.wav").write_bytes(content)
    with pytest.raises(InputError, match=needle):
        load_audio(tmp_path / "x.wav")


def test_load_audio_rejects_short_and_missing(tmp_path):
    sf.write(tmp_path / "short.wav", np.zeros(300, np.float32), 16000)
    with pytest.raises(InputError, match="ms long; at least 35 ms"):
        load_audio(tmp_path / "short.wav")
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")


def test_povey_window_starts_at_zero():
    """FeatureExtractor pre-emphasises whole blocks at once, which is exact only because of this."""
    from runtime.features import povey_window

    assert povey_window()[0] == 0.0 and povey_window()[1] > 0.0
