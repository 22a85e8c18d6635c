"""Kaldi-style fbank front end, equal to SeamlessM4TFeatureExtractor: numba kernel or vectorised numpy.

transformers frames each utterance in a Python loop (one FFT per 10 ms frame).
With numba installed (the runtime extras bring it) one compiled kernel does the
work 8 frames at a time (runtime/fbank_numba.py, ~3x faster than numpy here).
Otherwise frames go through numpy in cache-sized blocks (one strided view, one FFT
call and a few small matrix products per block). Per-utterance statistics are
taken at the end. Steps and constants are those of transformers:

    x * 2**15 (16-bit scale) -> 25 ms frames every 10 ms (no centering) ->
    remove DC per frame -> pre-emphasis 0.97 -> povey window -> 512-point FFT ->
    power -> 80 kaldi-mel filters 20 Hz..8 kHz (triangular in mel space) ->
    max(floor 1.1920929e-07) -> log -> per-bin mean/variance norm (ddof=1, + 1e-7)
    -> pad to a multiple of 2 -> stack 2 frames -> 160 dims; mask marks a stacked
    frame real when its second half is real.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path

import numpy as np

from .errors import DependencyError, InputError
from .fbank_constants import FFT_LENGTH, FRAME_LENGTH, HOP_LENGTH, MEL_FLOOR, MIN_SAMPLES, PREEMPHASIS, VARIANCE_EPS  # noqa: F401
from .inputs import is_whole

log = logging.getLogger("w2vbert")

BLOCK = 128  # frames per block: ~1.5 MB of buffers per concurrent call, inside L2 (64 and 256: within 3%)
MEL_GROUPS = 6  # the mel product in 6 banded pieces: 5.7x fewer multiply-adds, 2.7x faster than one


def kaldi_mel_filters(num_mel_bins: int, sampling_rate: int, fft_length: int = FFT_LENGTH,
                      low_hz: float = 20.0) -> np.ndarray:
    """(fft_length//2 + 1, num_mel_bins) triangular filters, triangular on the kaldi mel scale."""
    def mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)

    bins = fft_length // 2 + 1
    centers = np.linspace(mel(low_hz), mel(sampling_rate // 2), num_mel_bins + 2)  # (M+2,)
    fft_mels = mel(sampling_rate / fft_length * np.arange(bins))  # (bins,)
    slopes = centers[None, :] - fft_mels[:, None]  # (bins, M+2)
    widths = np.diff(centers)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up))


def povey_window(length: int = FRAME_LENGTH) -> np.ndarray:
    return np.power(np.hanning(length), 0.85)


class FeatureExtractor:
    """Raw 16 kHz mono audio -> (input_features [B, T, 160] float32, attention_mask [B, T] int64).

    use_numba: None (default) runs the numba kernel when numba imports and numpy otherwise;
    True requires numba (DependencyError without it); False always runs numpy. The kernel is
    compiled when the first extractor is built (~5 s) into numba's on-disk cache; later
    processes load it (building an extractor then takes ~0.5 s, numba's import included).

    Single-threaded per call: with numpy on the 2-core machine of
    benchmarks/results/frontend-notes.md, spreading blocks over 2 threads was slower (10.5 vs
    10.1 ms per 30 s). One extractor may be called from several threads at once (the numba
    kernel releases the GIL); each concurrent numpy call holds its own ~1.5 MB of block
    buffers, kept for reuse.
    """

    def __init__(self, sampling_rate: int = 16000, num_mel_bins: int = 80, stride: int = 2,
                 padding_value: float = 0.0, do_normalize_per_mel_bins: bool = True,
                 use_numba: bool | None = None, **unknown):
        if unknown:  # a misspelt parameter would otherwise leave its default silently in place
            raise InputError(f"FeatureExtractor got unknown parameter(s) {', '.join(sorted(unknown))}; it takes "
                             "sampling_rate, num_mel_bins, stride, padding_value, do_normalize_per_mel_bins, "
                             "use_numba (from_params() picks these out of a preprocessor_config.json)")
        self.sampling_rate = int(sampling_rate)
        self.num_mel_bins = int(num_mel_bins)
        self.stride = int(stride)
        self.padding_value = float(padding_value)
        self.normalize = bool(do_normalize_per_mel_bins)
        # Kaldi scales samples by 2**15 first. Every step up to the power spectrum is linear,
        # so the filters take the factor (2**15)**2 instead: a power of two, hence exact,
        # and one pass over the waveform less.
        filters = kaldi_mel_filters(self.num_mel_bins, self.sampling_rate) * 2.0 ** 30  # (257, M)
        empty = np.flatnonzero(~filters.any(axis=0))
        if empty.size:
            # transformers warns too; there its normalisation turns the constant into float32
            # rounding noise times 1/sqrt(1e-7) (-0.0030), here into 0.
            log.warning("%d of %d mel filters cover no FFT bin (num_mel_bins=%d is too high for a %d-point FFT at "
                        "%d Hz): mel bins %s are constant (0 after normalisation)", empty.size, self.num_mel_bins,
                        self.num_mel_bins, FFT_LENGTH, self.sampling_rate, empty.tolist())
        self._filters = np.repeat(filters, 2, axis=0).astype(np.float32)  # (514, M): once for re, once for im
        self._bands = _mel_bands(self._filters, MEL_GROUPS)
        # Kaldi pre-emphasises each frame on its own (first sample against itself), but the
        # povey window is 0 there, so pre-emphasising the whole signal once gives the same frames
        # (tests/runtime/test_features.py checks the window's first value).
        self._padded_window = np.concatenate([povey_window(), np.zeros(FFT_LENGTH - FRAME_LENGTH)])
        # Removing a frame's mean m before pre-emphasis subtracts 0.03 m from every emphasised
        # sample; after the window and the FFT that is 0.03 m times the window's spectrum.
        self._window_spectrum = np.fft.rfft(self._padded_window).view(np.float64)  # (514,) re, im, ...
        self._spare: list[tuple] = []  # block buffer sets not in use (one per concurrent call at most)
        self._use_numba = use_numba
        self._compiled = self._compiled_front_end(filters)

    @classmethod
    def from_params(cls, params: dict) -> "FeatureExtractor":
        return cls(**{k: v for k, v in params.items() if k in (
            "sampling_rate", "num_mel_bins", "stride", "padding_value", "do_normalize_per_mel_bins")})

    @classmethod
    def from_file(cls, path: str | Path) -> "FeatureExtractor":
        """Read a preprocessor_config.json."""
        try:
            return cls.from_params(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read preprocessor parameters from {path}: {exc}") from exc

    @property
    def feature_dim(self) -> int:
        return self.num_mel_bins * self.stride

    # ------------------------------------------------------------------ public
    def __call__(self, audio, sampling_rate: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One waveform (1-D) or a list of waveforms of any lengths -> padded batch and mask."""
        if sampling_rate is not None and not is_whole(sampling_rate):
            raise InputError(f"sampling_rate must be a whole number of Hz, got {sampling_rate!r}")
        if sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            raise InputError(f"audio sampled at {sampling_rate} Hz; this model expects {self.sampling_rate} Hz "
                             "(runtime.audio.load_audio resamples files)")
        waves = [self.check_wave(w, i) for i, w in enumerate(as_utterances(audio))]
        return self.stack(self.fbank(waves))

    def fbank(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Normalised log-mel frames per utterance: list of (frames, num_mel_bins) float32."""
        feats = [self._logmel(w) for w in waves]
        for i, (w, f) in enumerate(zip(waves, feats)):
            # NaN/Inf samples (or overflowing ones) surface here, after one cheap pass over
            # (frames, 80) values instead of one over every sample; the tail no frame reaches
            # (under one hop) is checked on its own, or a NaN there would pass unseen.
            covered = (len(f) - 1) * HOP_LENGTH + FRAME_LENGTH
            if not np.isfinite(f).all() or not np.isfinite(w[covered:]).all():
                raise InputError(f"audio {i} holds NaN/Inf samples or values too large to analyse")
        if not self.normalize:
            return feats
        if self._compiled is None:
            return [_normalize(f) for f in feats]
        for f in feats:
            self._compiled.normalize(f)
        return feats

    @property
    def compiled(self) -> bool:
        """True when the numba kernels (runtime/fbank_numba.py) do the work, False for the numpy path."""
        return self._compiled is not None

    def _logmel(self, wave: np.ndarray) -> np.ndarray:
        """(frames, num_mel_bins) float32 log-mel of one waveform in [-1, 1], block by block.

        Framing and FFT run in float64, as in transformers: at spectral nulls (a bin far
        below its neighbours) float32 was off by up to 6e-3 in log-mel. Per block of frames
        the samples they span are pre-emphasised once (e_n = x_n - 0.97 x_(n-1)) and each
        frame is copied out and windowed. The per-frame DC removal comes last, on the
        spectrum: removing a frame's mean m before pre-emphasis subtracts 0.03 m times the
        window's spectrum, one BLAS rank-1 update per block instead of a broadcast pass
        over the frames (0.72 vs 1.44 ms per 30 s, measured in place).
        """
        out = np.empty((1 + (len(wave) - FRAME_LENGTH) // HOP_LENGTH, self.num_mel_bins), dtype=np.float32)
        if self._compiled is not None:
            self._compiled.logmel(wave, out)
            return out
        try:
            buffers = self._spare.pop()  # list.pop / append are atomic: callers never share a set
        except IndexError:
            buffers = self._new_buffers()
        try:
            self._fill_logmel(wave, out, buffers)
        finally:
            self._spare.append(buffers)
        return out

    def _fill_logmel(self, wave: np.ndarray, out: np.ndarray, buffers: tuple) -> None:
        x, e, frames, padded, spectrum, power, mel = buffers
        rank1 = _blas_rank1()
        with np.errstate(all="ignore"):  # NaN/Inf/overflow: reported by fbank, as InputError
            for lo in range(0, len(out), BLOCK):
                m = min(BLOCK, len(out) - lo)
                span = (m - 1) * HOP_LENGTH + FRAME_LENGTH
                xs, es = x[:span], e[:span]
                np.copyto(xs, wave[lo * HOP_LENGTH:lo * HOP_LENGTH + span])
                dc = _frame_means(xs, m) * (1.0 - PREEMPHASIS)  # (m,)
                np.multiply(xs[:-1], -PREEMPHASIS, out=es[1:])
                es[1:] += xs[1:]
                y = padded[:m]
                np.copyto(y[:, :FRAME_LENGTH], frames[:m])
                if rank1 is None:  # no scipy: the same subtraction in the time domain, slower
                    y[:, :FRAME_LENGTH] -= dc[:, None]
                y *= self._padded_window
                parts = _rfft(y, spectrum[:m]).view(np.float64)  # (m, 514): re, im, re, im, ...
                if rank1 is not None:
                    rank1(parts.T, self._window_spectrum, dc)
                # Power and mel in float32 from here: squares and sums of positive terms keep
                # their relative precision (~1e-7), unlike the FFT's cancellations above. Real
                # and imaginary parts stay interleaved; the filters have each row twice.
                p, mm = power[:m], mel[:m]
                np.copyto(p, parts, casting="same_kind")
                np.square(p, out=p)  # after the cast: 0.55 vs 0.72 ms per 30 s for squaring while casting
                for first, last, low, high, band in self._bands:
                    np.matmul(p[:, low:high], band, out=mm[:, first:last])
                np.maximum(mm, MEL_FLOOR, out=mm)
                np.log(mm, out=out[lo:lo + m])

    def __getstate__(self) -> dict:
        # `frames` is a strided view of `e`; pickle and deepcopy would turn it into a separate,
        # stale array. Copies start without buffers. The numba front end is chosen again where
        # the copy is loaded (which may lack numba).
        return {**self.__dict__, "_spare": [], "_compiled": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._use_numba = state.get("_use_numba")
        self._compiled = self._compiled_front_end(kaldi_mel_filters(self.num_mel_bins, self.sampling_rate) * 2.0 ** 30)

    def _compiled_front_end(self, filters: np.ndarray):
        """filters: float64 (257, M), scaled as in __init__ (the numpy path keeps only a float32 copy)."""
        return _compiled_fbank(self._use_numba, filters, self._padded_window[:FRAME_LENGTH])

    def _new_buffers(self) -> tuple:
        """One set of block buffers (~1.5 MB), kept between calls rather than allocated per call."""
        longest = (BLOCK - 1) * HOP_LENGTH + FRAME_LENGTH
        x, e = np.empty(longest), np.zeros(longest)  # e[0] is never written: 0, met only by the window's 0
        frames = np.lib.stride_tricks.as_strided(e, (BLOCK, FRAME_LENGTH), (HOP_LENGTH * e.itemsize, e.itemsize),
                                                 writeable=False)
        # The FFT buffer's zero padding (columns 400..511) is only ever multiplied by the padded
        # window's zeros, so it stays 0 whatever a call's samples were (NaN included).
        return (x, e, frames, np.zeros((BLOCK, FFT_LENGTH)),
                np.empty((BLOCK, FFT_LENGTH // 2 + 1), dtype=np.complex128),
                np.empty((BLOCK, 2 * (FFT_LENGTH // 2 + 1)), dtype=np.float32),
                np.empty((BLOCK, self.num_mel_bins), dtype=np.float32))

    def stack(self, feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pad to the longest (rounded up to a multiple of stride) and stack `stride` frames."""
        longest = max(len(f) for f in feats)
        padded_len = -(-longest // self.stride) * self.stride
        batch = np.full((len(feats), padded_len, self.num_mel_bins), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(feats), padded_len), dtype=np.int64)
        for i, f in enumerate(feats):
            batch[i, :len(f)] = f
            mask[i, :len(f)] = 1
        features = batch.reshape(len(feats), padded_len // self.stride, self.feature_dim)  # (B, T, 160)
        # transformers keeps the mask of the last frame of each stack.
        return features, np.ascontiguousarray(mask[:, self.stride - 1::self.stride])

    # ------------------------------------------------------------------ checks
    def check_wave(self, wave, index: int = 0) -> np.ndarray:
        """-> 1-D float32 samples in [-1, 1], or InputError naming what was wrong."""
        w = np.asarray(wave)
        if w.dtype == np.int16:
            w = w.astype(np.float32) / 32768.0  # PCM16 -> [-1, 1), the scale the model was trained on
        elif w.dtype.kind != "f":
            raise InputError(f"audio {index} has dtype {w.dtype}; expected float samples in [-1, 1] or int16 PCM")
        if w.ndim != 1:
            # One rule for 2-D audio (README.md, "Runtime"): only the whole input may be a 2-D batch.
            raise InputError(f"audio {index} has shape {w.shape}; one utterance is 1-D samples (a 2-D array is a "
                             "batch (batch, samples) only as the whole input; downmix multi-channel audio first, "
                             "e.g. audio.mean(axis=0) for (channels, samples))")
        if w.size < MIN_SAMPLES:
            raise InputError(f"audio {index} has {w.size} samples ({w.size / self.sampling_rate * 1000:.1f} ms); "
                             f"at least {MIN_SAMPLES} ({MIN_SAMPLES / self.sampling_rate * 1000:.0f} ms) are needed")
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf: reported by fbank
            return np.ascontiguousarray(w, dtype=np.float32)


def as_utterances(audio) -> list:
    """The package's one rule for audio arrays, as transformers': a 1-D array is one waveform, a 2-D
    array a batch (batch, samples) of equal-length waveforms, a list or tuple one waveform per item."""
    if isinstance(audio, np.ndarray):
        if audio.ndim not in (1, 2):
            raise InputError(f"audio array has shape {audio.shape}; expected (samples,) or a batch (batch, samples)")
        if audio.ndim == 2 and audio.shape[0] == 0:
            raise InputError(f"no audio given (batch of shape {audio.shape})")
        if audio.ndim == 2 and audio.shape[1] < MIN_SAMPLES <= audio.shape[0]:
            raise InputError(f"audio array of shape {audio.shape} looks like (samples, channels); a 2-D array is a "
                             f"batch (batch, samples): pass mono samples, e.g. audio.mean(axis=1) or audio[:, 0]")
        return [audio] if audio.ndim == 1 else list(audio)
    if isinstance(audio, (list, tuple)):
        if not audio:
            raise InputError("no audio given (empty list)")
        if all(np.isscalar(a) and not isinstance(a, (str, bytes)) for a in audio):  # one waveform as a list
            return [np.asarray(audio, dtype=np.float32)]
        return list(audio)
    raise InputError(f"audio must be a numpy array or a list of arrays, got {type(audio).__name__}")


def _compiled_fbank(use_numba: bool | None, filters: np.ndarray, window: np.ndarray):
    """The numba front end, or None for the numpy one: None = numba when it works, True = required, False = numpy."""
    if use_numba is not None and not use_numba:
        return None
    try:
        from .fbank_numba import CompiledFbank
        return CompiledFbank(filters, window)  # runs the kernel once: compiles it or loads numba's cache
    except Exception as exc:  # noqa: BLE001 - any failure here means "no numba front end", said below
        # Besides ImportError: OSError from llvmlite where executable memory is refused, a numba
        # that cannot compile the kernel, a corrupt cache file.
        if use_numba:
            raise DependencyError(f"use_numba=True but the numba front end is unavailable ({type(exc).__name__}: "
                                  f"{exc}); install the runtime extra (pip install 'w2vbert-deploy[cpu]') "
                                  "or pass use_numba=False") from exc
        # Not installed: the numpy front end, as documented. Installed but unusable deserves a word:
        # the numpy front end is ~3x slower.
        missing = isinstance(exc, ModuleNotFoundError) and exc.name in ("numba", "llvmlite")
        if missing:
            log.info("numba front end unavailable (%s): using the numpy one", exc)
        else:
            log.warning("numba front end unavailable (%s: %s): using the numpy one (~3x slower). A damaged "
                        "numba cache goes away by deleting runtime/__pycache__/fbank_numba.* (or those files "
                        "under $NUMBA_CACHE_DIR)", type(exc).__name__, exc)
        return None


def _frame_means(samples: np.ndarray, count: int) -> np.ndarray:
    """(count,) float64 means of each 400-sample frame (hop 160) of `samples` (float64).

    Frames start every 2 and span 5 blocks of 80 samples: block sums first, then 5
    strided adds. Running sums cost 3x more and lose digits to cancellation as the sum grows.
    """
    block = math.gcd(FRAME_LENGTH, HOP_LENGTH)
    whole = len(samples) // block
    # einsum, not a BLAS product: OpenBLAS runs matrix-vector products of this size on several
    # threads whose spin-waiting then slows the rest of the front end (and its caller); and
    # not .sum(axis=1), whose pairwise reduction of short rows takes twice as long.
    sums = np.einsum("bs->b", samples[:whole * block].reshape(whole, block)) * (1.0 / FRAME_LENGTH)
    step, width = HOP_LENGTH // block, FRAME_LENGTH // block
    last = step * (count - 1) + 1
    return sum(sums[k:k + last:step] for k in range(width))


_NUMPY_FFT_OUT = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


def _rfft(frames: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Real FFT of every row into `out` (numpy >= 2 writes in place; older numpy allocates)."""
    if _NUMPY_FFT_OUT:
        return np.fft.rfft(frames, axis=1, out=out)
    out[...] = np.fft.rfft(frames, axis=1)
    return out


@functools.cache
def _blas_rank1():
    """A -= x y^T in place on an F-ordered A (scipy's BLAS dgemm with k = 1), or None without scipy.

    Not dger: OpenBLAS runs dger of a (514, 128) block on all cores and its idle threads then
    spin-wait, which slowed the whole front end (18 ms per 30 s with numpy's default threading,
    9.6 ms with OPENBLAS_NUM_THREADS=1) and the caller's next work. This dgemm took the same
    time with 1 or 2 OpenBLAS threads: it stays on the calling thread.
    """
    try:
        from scipy.linalg.blas import dgemm
    except ImportError as exc:
        log.info("numpy front end without scipy (%s): DC removal in the time domain, slower", exc)
        return None

    def rank1_subtract(a, x, y):
        out = dgemm(-1.0, x.reshape(-1, 1), y.reshape(1, -1), beta=1.0, c=a, overwrite_c=1)
        if not np.may_share_memory(out, a):  # f2py copies an A it cannot update in place
            a[...] = out
    return rank1_subtract


def _mel_bands(filters: np.ndarray, groups: int) -> list[tuple]:
    """Split the (bins, M) filters into `groups` runs of mel bins with the FFT-bin rows they touch.

    Each kaldi triangle spans a few FFT bins, so one dense (frames, 514) x (514, 80)
    product is mostly multiplications by zero; per run it is [first:last) mel bins
    from rows [low:high).
    """
    edges = np.linspace(0, filters.shape[1], groups + 1).round().astype(int)
    bands = []
    for first, last in zip(edges[:-1], edges[1:]):
        rows = np.flatnonzero(filters[:, first:last].any(axis=1))
        # Narrow triangles can miss every FFT bin (e.g. 128 mel bins at 512 points): an empty
        # band still writes its columns (zeros, then the floor) through a product over no rows.
        low, high = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
        bands.append((int(first), int(last), low, high, np.ascontiguousarray(filters[low:high, first:last])))
    return bands


def _normalize(x: np.ndarray) -> np.ndarray:
    """Per-bin zero mean, unit variance (ddof=1 as transformers); statistics accumulated in float64."""
    mean = x.mean(axis=0, dtype=np.float64)
    centered = x - mean.astype(np.float32)
    var = np.einsum("fm,fm->m", centered, centered, dtype=np.float64) / (len(x) - 1)
    centered *= (1.0 / np.sqrt(var + VARIANCE_EPS)).astype(np.float32)
    return centered
