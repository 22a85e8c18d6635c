"""Inputs for calibration (int8-qdq) and for the accuracy gates, from audio or saved features.

A PATH is an audio file (.wav/.flac/.ogg), a saved feature array (.npy: (frames, 160)
or (batch, frames, 160), every frame real), or a directory of those. Without a PATH
the six speech samples shipped with the package are used, split so the gates never see
what calibration saw: samples 0, 2, 4 calibrate, 1, 3, 5 are held out. Pass your own
domain's audio for a real deployment.

Calibration windows all have the same length (the histogram calibrators stack them),
cut from the concatenated features of every utterance, so short clips still count.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from runtime.errors import InputError

log = logging.getLogger("w2vbert")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
CALIBRATION_WINDOW = 100  # frames (2 s): short clips still give several windows
MAX_WINDOWS = 64  # bounds calibration time on long corpora
BUNDLED_GATE = "bundled samples 1, 3, 5"


def bundled_samples() -> list[Path]:
    from ..model.sources import BUNDLED

    return sorted((BUNDLED / "samples").glob("*.wav"))


def _files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES + (".npy",))
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"calibration / gate data {path} does not exist")
    if not files:
        raise InputError(f"{path} holds no audio ({', '.join(AUDIO_SUFFIXES)}) or .npy feature files")
    return files


def utterance_features(files: list[Path], preprocessor: dict, feature_dim: int) -> list[np.ndarray]:
    """One (frames, feature_dim) float32 array per utterance."""
    from runtime.audio import load_audio
    from runtime.features import FeatureExtractor

    extractor = FeatureExtractor.from_params(preprocessor or {})
    out = []
    for f in files:
        if f.suffix.lower() == ".npy":
            try:
                array = np.load(f, allow_pickle=False)  # never unpickle what a user points at
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read features from {f}: {exc}") from exc
            if array.ndim not in (2, 3) or array.shape[-1] != feature_dim or not np.isfinite(array).all():
                raise InputError(f"{f}: features of shape {array.shape} (finite: {np.isfinite(array).all()}); "
                                 f"expected finite (frames, {feature_dim}) or (batch, frames, {feature_dim})")
            out.extend(a.astype(np.float32) for a in (array if array.ndim == 3 else [array]))
        else:
            features, mask = extractor(load_audio(f))
            out.append(features[0, :int(mask[0].sum())])
    return out


def calibration_feeds(path, preprocessor: dict, feature_dim: int, min_frames: int) -> list[dict]:
    """Equal-length windows of real frames as onnxruntime feeds for the calibrators."""
    files = _files(path) if path else bundled_samples()[0::2]
    frames = np.concatenate(utterance_features(files, preprocessor, feature_dim))
    window = max(min_frames, min(CALIBRATION_WINDOW, len(frames)))
    if len(frames) < window:
        raise InputError(f"calibration data has {len(frames)} frames; at least {window} are needed")
    count = min(MAX_WINDOWS, len(frames) // window)
    if count * window < len(frames):
        log.info("calibration: %d windows of %d frames from %d frames (%d left out%s)", count, window,
                 len(frames), len(frames) - count * window, f", at most {MAX_WINDOWS} windows"
                 if count == MAX_WINDOWS else "")
    return [{"input_features": frames[i * window:(i + 1) * window][None],
             "attention_mask": np.ones((1, window), np.int64)} for i in range(count)]


def gate_files(path) -> list[Path]:
    """The held-out files: those at `path`, or the bundled samples 1, 3, 5."""
    return _files(path) if path else bundled_samples()[1::2]


def gate_data_record(path) -> dict:
    """What a variant records of its gate data: where it was and a digest of its content, so
    `verify` runs on the same data and can tell when it is given other data."""
    digest = hashlib.sha256()
    files = gate_files(path)
    for f in files:
        digest.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return {"path": None if path is None else str(Path(path).resolve()), "label": str(path or BUNDLED_GATE),
            "files": len(files), "sha256": digest.hexdigest()}


def held_out_batches(path, preprocessor: dict, feature_dim: int, min_frames: int,
                     batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Right-padded batches (features, mask) of held-out utterances for the gates."""
    every = utterance_features(gate_files(path), preprocessor, feature_dim)
    utterances = [u for u in every if len(u) >= min_frames]
    if not utterances:
        raise InputError(f"no gate utterance has the {min_frames} frames this model needs")
    if len(utterances) < len(every):
        log.info("gate data: %d of %d utterances are shorter than the model's %d frames and are left out",
                 len(every) - len(utterances), len(every), min_frames)
    batches = []
    for lo in range(0, len(utterances), batch_size):
        group = utterances[lo:lo + batch_size]
        longest = max(len(u) for u in group)
        features = np.zeros((len(group), longest, feature_dim), np.float32)
        mask = np.zeros((len(group), longest), np.int64)
        for i, u in enumerate(group):
            features[i, :len(u)], mask[i, :len(u)] = u, 1
        batches.append((features, mask))
    return batches
