"""Model outputs -> text, labels or embeddings (no torch, no transformers).

``CTCDecoder`` reproduces ``Wav2Vec2CTCTokenizer.batch_decode`` with its defaults
(special tokens kept, repeats collapsed, blank = pad token dropped, word
delimiter -> space, strip, optional lower-casing and clean-up), reading the
checkpoint's tokenizer files copied into the artifact.
"""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

import numpy as np

from .errors import ArtifactError, InputError


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc


def greedy_ids(logits: np.ndarray, blank: int) -> list[int]:
    """Greedy CTC on one utterance's (T, V) logits: argmax per frame, repeats collapsed, blanks dropped."""
    ids = np.argmax(logits, -1)
    keep = np.r_[True, ids[1:] != ids[:-1]] & (ids != blank)
    return [int(i) for i in ids[keep]]


class CTCDecoder:
    def __init__(self, vocab: dict[str, int], pad_token: str = "<pad>", word_delimiter_token: str = "|",
                 replace_word_delimiter_char: str = " ", do_lower_case: bool = False,
                 clean_up_tokenization_spaces: bool = False):
        self.id_to_token = {int(i): t for t, i in vocab.items()}
        self.pad_token = pad_token
        self.word_delimiter_token = word_delimiter_token
        self.replace_word_delimiter_char = replace_word_delimiter_char
        self.do_lower_case = do_lower_case
        self.clean_up = clean_up_tokenization_spaces

    @classmethod
    def from_dir(cls, root: str | Path) -> "CTCDecoder":
        root = Path(root)
        if not (root / "vocab.json").is_file():
            raise ArtifactError(f"no vocab.json in {root}: a CTC artifact needs the checkpoint's tokenizer "
                                "files to turn logits into text")
        vocab = _read_json(root / "vocab.json")
        if vocab and all(isinstance(v, dict) for v in vocab.values()):
            raise ArtifactError(f"{root / 'vocab.json'} is a multi-language vocabulary; pick one language")
        options = {}
        if (root / "tokenizer_config.json").is_file():
            config = _read_json(root / "tokenizer_config.json")
            options = {k: config[k] for k in ("pad_token", "word_delimiter_token", "replace_word_delimiter_char",
                                                "do_lower_case", "clean_up_tokenization_spaces") if k in config}
            for name, spec in config.get("added_tokens_decoder", {}).items():
                vocab.setdefault(spec["content"] if isinstance(spec, dict) else spec, int(name))
        if (root / "added_tokens.json").is_file():
            vocab.update(_read_json(root / "added_tokens.json"))
        return cls(vocab, **options)

    def decode_ids(self, ids) -> str:
        tokens = [self.id_to_token.get(int(i), "") for i in ids]
        chars = [token for token, _ in groupby(tokens)]
        chars = [self.replace_word_delimiter_char if c == self.word_delimiter_token else c
                 for c in chars if c != self.pad_token]
        text = "".join(chars).strip()
        if self.do_lower_case:
            text = text.lower()
        if self.clean_up:
            for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                                  (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(before, after)
        return text

    def decode(self, logits: np.ndarray, lengths=None) -> list[str]:
        """Greedy decoding of (B, T, V) logits; `lengths` limits each row to its real output frames."""
        if logits.ndim != 3:
            raise InputError(f"CTC logits must be (batch, frames, vocab), got shape {logits.shape}")
        ids = logits.argmax(axis=-1)
        lengths = [ids.shape[1]] * len(ids) if lengths is None else lengths
        return [self.decode_ids(row[:int(n)]) for row, n in zip(ids, lengths)]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def top_labels(logits: np.ndarray, id2label: dict) -> list[dict]:
    """(B, L) classification logits -> [{label, probability, scores}] per utterance."""
    probs = softmax(logits.astype(np.float64))
    labels = {int(k): v for k, v in id2label.items()}
    return [{"label": labels.get(int(p.argmax()), str(int(p.argmax()))), "probability": float(p.max()),
             "scores": {labels.get(i, str(i)): float(v) for i, v in enumerate(p)}} for p in probs]


def frame_labels(logits: np.ndarray, id2label: dict, lengths) -> list[list[str]]:
    """(B, T, L) frame logits -> per-utterance list of frame labels (real frames only)."""
    labels = {int(k): v for k, v in id2label.items()}
    ids = logits.argmax(axis=-1)
    return [[labels.get(int(i), str(int(i))) for i in row[:int(n)]] for row, n in zip(ids, lengths)]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two XVector embeddings (1-D), e.g. for speaker verification."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"embeddings differ in size: {a.shape} vs {b.shape}")
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0:
        raise InputError("cosine similarity of a zero embedding is undefined")
    return float(a @ b / norm)


def edit_distance(a, b) -> int:
    """Levenshtein distance of two sequences (characters, words or token ids)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def error_rates(hypotheses: list[str], references: list[str]) -> tuple[float, float]:
    """(CER, WER) in percent, summed over the set (errors / reference length).

    An empty reference set counts its length as 1, so a model that says nothing where the
    reference says nothing scores 0 and any output scores > 0 instead of dividing by zero.
    """
    chars = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    words = sum(edit_distance(h.split(), r.split()) for h, r in zip(hypotheses, references))
    return (100.0 * chars / max(1, sum(len(r) for r in references)),
            100.0 * words / max(1, sum(len(r.split()) for r in references)))
