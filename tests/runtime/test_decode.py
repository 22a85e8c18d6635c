from __future__ import annotations

import numpy as np
import pytest

from runtime.decode import cosine_similarity, frame_labels, top_labels
from runtime.tokenizer import CTCTokenizer
from runtime.errors import ArtifactError, InputError
from tests.conftest import FIXTURE


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(FIXTURE))


def test_greedy_decoding_equals_transformers_batch_decode(tokenizer):
    decoder = CTCTokenizer.from_dir(FIXTURE)
    rng = np.random.default_rng(0)
    vocab = len(tokenizer)
    rows = []
    for n in range(200):
        length = int(rng.integers(0, 40))
        # Runs of repeats, blanks (0), delimiters (4) and specials (1-3) all occur.
        row = rng.choice(vocab, size=length, p=None)
        row = np.repeat(row, rng.integers(1, 4, size=length))
        rows.append(row.tolist())
    assert [decoder.decode(r) for r in rows] == tokenizer.batch_decode(rows)


def test_decode_limits_each_row_to_its_length():
    decoder = CTCTokenizer({"<pad>": 0, "a": 1, "b": 2, "|": 3})
    logits = np.full((2, 5, 4), -1.0, np.float32)
    for t, k in enumerate([1, 1, 3, 2, 2]):
        logits[0, t, k] = 1.0
    logits[1] = logits[0]
    assert decoder.decode_logits(logits, lengths=[5, 2]) == ["a b", "a"]


def test_missing_vocab_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="no vocab.json"):
        CTCTokenizer.from_dir(tmp_path)


def test_labels_frames_and_cosine():
    labels = top_labels(np.array([[0.0, 2.0, 1.0]]), {"0": "no", "1": "yes", "2": "up"})
    assert labels[0]["label"] == "yes" and abs(sum(labels[0]["scores"].values()) - 1) < 1e-9
    frames = frame_labels(np.array([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]]), {0: "sil", 1: "speech"}, [2])
    assert frames == [["sil", "speech"]]
    assert cosine_similarity([1, 0], [2, 0]) == pytest.approx(1.0)
    assert cosine_similarity([1, 0], [0, 3]) == pytest.approx(0.0)
    with pytest.raises(InputError):
        cosine_similarity([0, 0], [1, 1])
