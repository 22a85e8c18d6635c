"""``Processor``: transformers' ``Wav2Vec2BertProcessor`` with numpy only.

The calls a Hugging Face user writes keep working after a one-line import change::

    from runtime import Processor                        # was: from transformers import Wav2Vec2BertProcessor
    processor = Processor.from_pretrained("artifact")    # an artifact or an HF checkpoint directory
    inputs = processor(audio, sampling_rate=16000, return_tensors="np")
    texts = processor.batch_decode(logits.argmax(-1))

Results are those of transformers: ``input_features`` float32 (B, T, 160), ``attention_mask``
int32 (B, T), ``labels`` as the tokenizer encodes text (padded with the pad id by ``pad``).
The features come from runtime.features (the same numbers as transformers' within float32
rounding; tests/runtime/test_processor.py holds them side by side).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import ArtifactError, InputError
from .features import FeatureExtractor, as_utterances
from .tokenizer import CTCTokenizer

PREPROCESSOR_FILE = "preprocessor_config.json"
# What transformers' SeamlessM4TFeatureExtractor reads (and our FeatureExtractor takes a part of).
SAVED_PARAMS = ("feature_size", "num_mel_bins", "sampling_rate", "stride", "padding_value", "padding_side",
                "return_attention_mask", "do_normalize_per_mel_bins")


class BatchFeature(dict):
    """A dict whose keys are also attributes (``inputs.input_features``), as transformers' BatchFeature."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Processor:
    def __init__(self, feature_extractor: FeatureExtractor, tokenizer: CTCTokenizer | None = None,
                 params: dict | None = None):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.params = dict(params or {})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "Processor":
        """An artifact written by ``w2vbert export`` or a checkpoint directory (preprocessor_config.json and,
        for CTC models, vocab.json / tokenizer_config.json)."""
        root = Path(path)
        if (root / "manifest.json").is_file():
            from .manifest import load_manifest

            params = dict(load_manifest(root).data["preprocessor"])
        elif (root / PREPROCESSOR_FILE).is_file():
            try:
                params = json.loads((root / PREPROCESSOR_FILE).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ArtifactError(f"cannot read {root / PREPROCESSOR_FILE}: {exc}") from exc
        else:
            raise ArtifactError(f"{root} holds neither manifest.json (an artifact) nor {PREPROCESSOR_FILE} "
                                "(a checkpoint directory)")
        try:
            extractor = FeatureExtractor.from_params(params)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"the preprocessor parameters in {root} are unusable: {exc}") from exc
        tokenizer = CTCTokenizer.from_dir(root) if (root / "vocab.json").is_file() else None
        return cls(extractor, tokenizer, params)

    def save_pretrained(self, directory: str | Path, overwrite: bool = False) -> list[Path]:
        """Write preprocessor_config.json and the tokenizer files, which transformers'
        ``Wav2Vec2BertProcessor.from_pretrained`` loads. Existing files are kept unless `overwrite`."""
        directory = Path(directory)
        names = [PREPROCESSOR_FILE] + (["vocab.json", "tokenizer_config.json", "special_tokens_map.json"]
                                       if self.tokenizer else [])
        existing = [str(directory / n) for n in names if (directory / n).exists()]
        if existing and not overwrite:
            raise InputError(f"{', '.join(existing)} already exist; pass overwrite=True to replace them")
        directory.mkdir(parents=True, exist_ok=True)
        # Written in a scratch folder next to the target and moved in, so a failure leaves no half set.
        with tempfile.TemporaryDirectory(dir=directory, prefix=".processor-") as scratch:
            scratch = Path(scratch)
            fe = self.feature_extractor
            config = {"feature_extractor_type": "SeamlessM4TFeatureExtractor", **{
                k: self.params[k] for k in SAVED_PARAMS if k in self.params},
                "num_mel_bins": fe.num_mel_bins, "sampling_rate": fe.sampling_rate, "stride": fe.stride,
                "padding_value": fe.padding_value, "processor_class": "Wav2Vec2BertProcessor"}
            config.setdefault("feature_size", fe.num_mel_bins)
            (scratch / PREPROCESSOR_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            if self.tokenizer:
                self.tokenizer.save(scratch)
            for name in names:
                os.replace(scratch / name, directory / name)
        return [directory / n for n in names]

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    # ------------------------------------------------------------------ encoding
    def __call__(self, audio=None, text=None, sampling_rate: int | None = None, padding=True,
                 return_attention_mask: bool = True, return_tensors: str | None = "np") -> BatchFeature:
        """Audio -> input_features (+ attention_mask), text -> labels; text alone -> input_ids + attention_mask."""
        _check_return_tensors(return_tensors)
        if audio is None and text is None:
            raise InputError("Processor needs audio, text or both; got neither")
        if padding not in (True, False, "longest"):
            raise InputError(f"padding={padding!r} is not supported; use True or 'longest' (pad to the longest "
                             "utterance), or False for utterances of equal length")
        out = BatchFeature()
        if audio is not None:
            utterances = as_utterances(audio)
            if padding is False and len({len(np.asarray(a)) for a in utterances}) > 1:
                raise InputError("padding=False needs utterances of equal length (transformers fails on others "
                                 "too); use padding=True")
            features, mask = self.feature_extractor(utterances, sampling_rate=sampling_rate)
            out["input_features"] = features
            if return_attention_mask:
                out["attention_mask"] = mask.astype(np.int32)  # transformers' dtype
        if text is not None:
            single = isinstance(text, str)
            rows = [self.tokenizer_for("text").encode(text)] if single else self._encode_all(text)
            padded = padding is not False and len({len(r) for r in rows}) > 1
            ids, mask = _pad_ids(rows, self.tokenizer.pad_token_id) if padded else (rows, [[1] * len(r) for r in rows])
            if audio is None:
                out["input_ids"] = _as_tensors(ids[0] if single else ids, return_tensors, single)
                out["attention_mask"] = _as_tensors(mask[0] if single else mask, return_tensors, single)
            else:
                out["labels"] = _as_tensors(ids[0] if single else ids, return_tensors, single)
        return out

    def tokenizer_for(self, what: str) -> CTCTokenizer:
        if self.tokenizer is None:
            raise InputError(f"this processor has no tokenizer (the model is not CTC, or its vocab.json is missing): "
                             f"{what} cannot be encoded")
        return self.tokenizer

    def _encode_all(self, text) -> list[list[int]]:
        if not isinstance(text, (list, tuple)) or not all(isinstance(t, str) for t in text):
            raise InputError(f"text must be a string or a list of strings, got {type(text).__name__}")
        if not text:
            raise InputError("text is an empty list")
        tokenizer = self.tokenizer_for("text")
        return [tokenizer.encode(t) for t in text]

    def pad(self, input_features=None, labels=None, return_tensors: str | None = "np") -> BatchFeature:
        """Already-extracted features ((T, 160) arrays, or dicts holding one as "input_features") padded to the
        longest with a mask; label id lists (or {"input_ids": ...} dicts) padded with the pad id."""
        _check_return_tensors(return_tensors)
        if input_features is None and labels is None:
            raise InputError("pad needs input_features, labels or both; got neither")
        out = BatchFeature()
        if input_features is not None:
            feats = _items(input_features, "input_features")
            arrays = [np.asarray(f, dtype=np.float32) for f in feats]
            width = self.feature_extractor.feature_dim
            bad = [i for i, a in enumerate(arrays) if a.ndim != 2 or a.shape[1] != width]
            if bad:
                raise InputError(f"input_features {bad[0]} has shape {arrays[bad[0]].shape}; expected (frames, "
                                 f"{width}) as the processor returns per utterance")
            longest = max(len(a) for a in arrays)
            batch = np.full((len(arrays), longest, width), self.feature_extractor.padding_value, np.float32)
            mask = np.zeros((len(arrays), longest), np.int32)
            for i, a in enumerate(arrays):
                batch[i, :len(a)], mask[i, :len(a)] = a, 1
            out["input_features"], out["attention_mask"] = batch, mask
        if labels is not None:
            try:
                rows = [[int(i) for i in r] for r in _items(labels, "input_ids")]
            except (TypeError, ValueError) as exc:
                raise InputError(f"labels must be a list of id sequences (or of dicts with 'input_ids'): "
                                 f"{exc}") from exc
            ids, mask = _pad_ids(rows, self.tokenizer.pad_token_id if self.tokenizer else 0)
            if input_features is None:  # as transformers: labels alone come back as a tokenizer batch
                out["input_ids"], out["attention_mask"] = np.array(ids, np.int64), np.array(mask, np.int64)
            else:
                out["labels"] = np.array(ids, dtype=np.int64)
        if return_tensors is None:
            return BatchFeature({k: v.tolist() for k, v in out.items()})
        return out

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids, **options):
        """One sequence of ids or (frames, vocab) logits -> text (see CTCTokenizer.decode for the options)."""
        return self._tokenizer().decode(token_ids, **options)

    def batch_decode(self, sequences, **options):
        """Sequences of ids, or (B, T, V) logits -> texts (or a DecodeOutput of lists with offsets)."""
        return self._tokenizer().batch_decode(sequences, **options)

    def _tokenizer(self) -> CTCTokenizer:
        return self.tokenizer_for("ids")


def _check_return_tensors(return_tensors) -> None:
    if return_tensors not in ("np", None):
        raise InputError(f"return_tensors={return_tensors!r}: the runtime is numpy only; use 'np' (or None)")


def _items(values, key: str) -> list:
    """A list of arrays/lists, of dicts holding `key`, or a dict of such a list -> the list."""
    if isinstance(values, dict):
        values = values.get(key)
    if not isinstance(values, (list, tuple)) or not values:
        raise InputError(f"pad expects a non-empty list of {key} (or of dicts with {key!r}), got "
                         f"{type(values).__name__}")
    missing = [i for i, v in enumerate(values) if isinstance(v, dict) and key not in v]
    if missing:
        raise InputError(f"pad: item {missing[0]} is a dict with keys {sorted(values[missing[0]])}; expected {key!r}")
    return [v[key] if isinstance(v, dict) else v for v in values]


def _pad_ids(rows: list[list[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Right-pad id rows to the longest with the pad id; 1/0 masks."""
    longest = max(len(r) for r in rows)
    return ([r + [pad_id] * (longest - len(r)) for r in rows],
            [[1] * len(r) + [0] * (longest - len(r)) for r in rows])


def _as_tensors(ids, return_tensors, single: bool):
    """Token ids as transformers returns them: lists, or with 'np' a (1, L) / (B, L) array (ragged: objects)."""
    if return_tensors is None:
        return ids
    rows = [ids] if single else ids
    if len({len(r) for r in rows}) <= 1:
        return np.array(rows, dtype=np.int64).reshape(len(rows), -1)
    ragged = np.empty(len(rows), dtype=object)
    ragged[:] = [np.array(r, dtype=np.int64) for r in rows]
    return ragged
