"""Model outputs -> labels, embedding similarity and error rates (no torch, no transformers).

CTC text is runtime.tokenizer's (CTCTokenizer).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def greedy_ids(logits: np.ndarray, blank: int) -> list[int]:
    """Greedy CTC on one utterance's (T, V) logits: argmax per frame, repeats collapsed, blanks dropped."""
    ids = np.argmax(logits, -1)
    keep = np.r_[True, ids[1:] != ids[:-1]] & (ids != blank)
    return [int(i) for i in ids[keep]]


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
