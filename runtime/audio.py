"""Sound files -> 16 kHz mono float32, for the front end.

* Formats: whatever libsndfile reads (wav, flac, ogg/vorbis, ...), through soundfile.
* Other sample rates are resampled with scipy's polyphase FIR resampler
  (``resample_poly``, Kaiser-windowed band-limited filter), and the conversion is logged.
* Multi-channel audio: the first channel is used, as transformers'
  SeamlessM4TFeatureExtractor does with (channels, samples) input.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import InputError, require
from .features import MIN_SAMPLES

log = logging.getLogger("w2vbert")
TARGET_RATE = 16000


def resample(audio: np.ndarray, rate: int, target: int = TARGET_RATE) -> np.ndarray:
    """Band-limited polyphase resampling from `rate` to `target` Hz."""
    if rate == target:
        return audio
    signal = require("scipy.signal", "cpu", "resampling audio")
    ratio = Fraction(target, rate)
    return signal.resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def checked_at(checker, samples, index: int, sampling_rate: int | None = None) -> np.ndarray:
    """Samples checked by `checker` (a FeatureExtractor: rank, dtype, length) and, when they were taken
    at `sampling_rate`, resampled to its rate and checked again (the length may fall short)."""
    wave = checker.check_wave(samples, index)
    if sampling_rate is None or sampling_rate == checker.sampling_rate:
        return wave
    return checker.check_wave(resample(wave, sampling_rate, checker.sampling_rate), index)


def load_audio(path, target_rate: int = TARGET_RATE, name: str | None = None) -> np.ndarray:
    """Read a sound file (a path, or a binary file object named `name`) as mono float32 at
    `target_rate`; clear errors for unusable files."""
    sf = require("soundfile", "cpu", "reading audio files")
    if isinstance(path, (str, Path)):
        path = Path(path)
        if path.is_dir():
            raise InputError(f"{path} is a directory; pass audio files (e.g. {path}/*.wav)")
        if not path.is_file():
            raise InputError(f"audio file {path} does not exist")
        source = str(path)
    else:
        source, path = path, Path(name or "audio")
    try:
        audio, rate = sf.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, TypeError) as exc:
        raise InputError(f"cannot read {path} as audio ({exc}); supported: wav, flac, ogg and other "
                         "libsndfile formats") from exc
    if audio.size == 0:
        raise InputError(f"{path} holds no samples")
    if audio.shape[1] > 1:
        log.info("%s has %d channels; using the first, as transformers does", path.name, audio.shape[1])
    mono = np.ascontiguousarray(audio[:, 0])
    if rate != target_rate:
        log.info("%s: resampling %d Hz -> %d Hz (polyphase)", path.name, rate, target_rate)
        mono = resample(mono, rate, target_rate)
    if mono.size < MIN_SAMPLES:
        raise InputError(f"{path} is {mono.size / target_rate * 1000:.1f} ms long; at least "
                         f"{MIN_SAMPLES / target_rate * 1000:.0f} ms ({MIN_SAMPLES} samples at {target_rate} Hz) "
                         "are needed for one output frame")
    return mono
