"""Audio in, task results out: front end + Session + decoding, with batching and chunking.

* Many utterances are sorted by length and run in batches, so padding stays small;
  results come back in the caller's order.
* Long audio (CTC heads): cut into chunks of `chunk_seconds` that overlap by
  `overlap_seconds` on each side; only the logits of each chunk's centre are kept and
  the kept frames are concatenated before greedy decoding, so a word cut by a chunk
  border is still decoded from a chunk that sees it whole. Memory stays bounded by
  one batch of chunks whatever the recording's length.
* Word timestamps (``timestamps=True``) come from the same concatenated frames: chunk
  starts and overlaps are whole output frames, so every kept frame has one global time
  and a word cut by a seam is one word (CTC merges its frames across the seam).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .decode import frame_labels, top_labels
from .errors import InputError
from .features import FRAME_LENGTH, HOP_LENGTH, MIN_SAMPLES, FeatureExtractor
from .shapes import output_frames
from .timestamps import Alignment, samples_per_frame
from .tokenizer import CTCTokenizer

log = logging.getLogger("w2vbert")
MIN_CHUNK_SECONDS = 1.0


@dataclass
class Result:
    """One utterance's result; which fields are set depends on the head."""

    text: str | None = None
    words: list | None = None  # [{"word", "start", "end"}] in seconds, with timestamps=True
    label: dict | None = None
    frame_labels: list | None = None
    embedding: np.ndarray | None = None
    hidden: np.ndarray | None = None

    def to_json(self) -> dict:
        out = {}
        for name in ("text", "words", "label", "frame_labels"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.embedding is not None:
            out["embedding"] = [float(v) for v in self.embedding]
        if self.hidden is not None:
            out["hidden_shape"] = list(self.hidden.shape)
        return out


class AudioRunner:
    def __init__(self, session, batch_size: int = 8, chunk_seconds: float = 30.0, overlap_seconds: float = 2.0):
        if not overlap_seconds >= 0:
            raise InputError(f"overlap_seconds must be >= 0, got {overlap_seconds}")
        if not chunk_seconds >= MIN_CHUNK_SECONDS:
            # A chunk's centre must be able to hold a word: shorter chunks decode to nothing.
            raise InputError(f"chunk_seconds must be >= {MIN_CHUNK_SECONDS:g} (a chunk shorter than a second "
                             f"cuts every word), got {chunk_seconds}")
        if chunk_seconds <= 2 * overlap_seconds:
            raise InputError(f"chunk_seconds ({chunk_seconds}) must exceed twice overlap_seconds ({overlap_seconds})")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.session = session
        self.batch_size = batch_size
        root = session.manifest.root if session.manifest else None
        params = session.manifest.data["preprocessor"] if session.manifest else session.preprocessor
        self.features = FeatureExtractor.from_params(params)
        self.rate = self.features.sampling_rate
        self.frame_samples = samples_per_frame(session.config, self.features.stride)
        # Whole output frames, so every chunk's frames fall on the recording's frame grid.
        self.chunk = _whole_frames(chunk_seconds * self.rate, self.frame_samples)
        self.overlap = _whole_frames(overlap_seconds * self.rate, self.frame_samples)
        self._fit_engine_profile()
        if self.chunk <= 2 * self.overlap:
            raise InputError(f"chunk_seconds ({chunk_seconds}) and overlap_seconds ({overlap_seconds}) in whole output "
                             f"frames of {self.frame_samples / self.rate * 1000:g} ms leave no centre to keep; "
                             "shorten the overlap")
        self.decoder = None
        if session.head == "CTC":
            if root is None:
                raise InputError("transcription needs an artifact directory (it holds vocab.json), "
                                 "not a bare .onnx file")
            self.decoder = CTCTokenizer.from_dir(root)

    def _fit_engine_profile(self) -> None:
        """A TensorRT plan takes batches and chunks up to its profile's maxima: the pipeline's batches and
        chunks (with the short tail a last chunk may absorb) are cut to fit, rather than refused per call."""
        limits = getattr(self.session, "engine_limits", None)
        if not limits:
            return
        max_batch, max_frames = limits
        self.batch_size = min(self.batch_size, max_batch)
        fits = max_frames * HOP_LENGTH * self.features.stride - 4 * MIN_SAMPLES - FRAME_LENGTH
        if self.chunk > fits:
            self.chunk = (fits // self.frame_samples) * self.frame_samples
            log.info("chunks cut to %.2f s to fit the TensorRT profile (max %d frames)", self.chunk / self.rate,
                     max_frames)

    # ------------------------------------------------------------------ public
    def __call__(self, waves: list[np.ndarray], timestamps: bool = False) -> list[Result]:
        """One Result per wave; CTC results carry per-word times in seconds when `timestamps`."""
        if self.session.head != "CTC":
            return self.run_sorted(self._checked(waves), self._results)
        results = []
        for alignment in self.align(waves):
            if not timestamps:
                results.append(Result(text=self.decoder.decode(alignment.ids)))
                continue
            out = self.decoder.decode(alignment.ids, output_word_offsets=True)
            results.append(Result(text=out.text, words=alignment.words(out.word_offsets)))
        return results

    def align(self, waves: list[np.ndarray]) -> list[Alignment]:
        """CTC heads: each wave's greedy frame ids (long audio chunked) and their global frame times."""
        if self.decoder is None:
            raise InputError(f"frame alignment needs a CTC head; this model's head is {self.session.head}")
        return self._transcribe(self._checked(waves))

    @staticmethod
    def _checked(waves) -> list[np.ndarray]:
        waves = [np.asarray(w) for w in waves]
        if not waves:
            raise InputError("no audio given")
        return waves

    # ------------------------------------------------------------------ batching
    def run_sorted(self, waves, handler) -> list:
        """handler(outputs, mask) -> one value per row, for every wave, in batches sorted by length."""
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        results: list = [None] * len(waves)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            x, mask = self.features([waves[i] for i in idx])
            outputs = self.session.run(x, mask)
            for i, value in zip(idx, handler(outputs, mask)):
                results[i] = value
        return results

    def _lengths(self, mask: np.ndarray) -> list[int]:
        return [output_frames(int(n), self.session.config) for n in mask.sum(axis=1)]

    def _results(self, outputs, mask) -> list[Result]:
        head, config = self.session.head, self.session.config
        if head == "SequenceClassification":
            return [Result(label=r) for r in top_labels(outputs["logits"], config["id2label"])]
        if head == "AudioFrameClassification":
            return [Result(frame_labels=r) for r in frame_labels(outputs["logits"], config["id2label"],
                                                                 mask.sum(axis=1))]
        if head == "XVector":
            return [Result(embedding=e) for e in outputs["embeddings"]]
        lengths = self._lengths(mask)
        return [Result(hidden=h[:n]) for h, n in zip(outputs["last_hidden_state"], lengths)]

    # ------------------------------------------------------------------ CTC
    def _transcribe(self, waves) -> list[Alignment]:
        pieces = []  # (utterance, chunk start in the recording, audio, keep_from_sample, keep_to_sample)
        for u, wave in enumerate(waves):
            pieces.extend((u, *chunk) for chunk in self._chunks(wave))
        kept = self.run_sorted([p[2] for p in pieces], lambda out, mask: self._frames(out["logits"], mask))
        ids: dict[int, list] = {}
        starts: dict[int, list] = {}
        spf = self.frame_samples
        for (u, offset, _, keep_from, keep_to), frame_ids in zip(pieces, kept):
            lo, hi = round(keep_from / spf), min(round(keep_to / spf), len(frame_ids))
            ids.setdefault(u, []).append(frame_ids[lo:hi])
            starts.setdefault(u, []).append(offset + spf * np.arange(lo, hi, dtype=np.int64))
        return [Alignment(np.concatenate(ids[u]), np.concatenate(starts[u]), spf, len(waves[u]), self.rate)
                for u in range(len(waves))]

    def _frames(self, logits, mask) -> list[np.ndarray]:
        ids = logits.argmax(axis=-1)
        return [row[:n] for row, n in zip(ids, self._lengths(mask))]

    def _chunks(self, wave: np.ndarray):
        """(start, audio, keep_from, keep_to): where a chunk starts, its samples and the part of it
        this chunk is trusted for."""
        if len(wave) <= self.chunk:
            return [(0, wave, 0, len(wave))]
        step = self.chunk - 2 * self.overlap
        spans = []  # [lo, hi, keep_lo, keep_hi] in samples of the whole recording
        for centre in range(0, len(wave), step):
            end = min(centre + step, len(wave))
            spans.append([max(0, centre - self.overlap), min(len(wave), end + self.overlap), centre, end])
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] < 4 * MIN_SAMPLES:
            last = spans.pop()  # a sliver too short to analyse: the previous chunk takes it
            spans[-1][1], spans[-1][3] = last[1], last[3]
        return [(lo, wave[lo:hi], keep_lo - lo, keep_hi - lo) for lo, hi, keep_lo, keep_hi in spans]


def _whole_frames(samples: float, frame_samples: int) -> int:
    return int(round(samples / frame_samples)) * frame_samples

