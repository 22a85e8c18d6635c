from __future__ import annotations

import numpy as np
import pytest

from runtime.decode import cosine_similarity, edit_distance, error_rates, frame_labels, greedy_ids, softmax, top_labels
from runtime.errors import ArtifactError, InputError
from runtime.tokenizer import CTCTokenizer
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
    for _ in range(200):
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


def test_decode_logits_without_lengths_uses_every_frame_and_refuses_other_ranks():
    decoder = CTCTokenizer({"<pad>": 0, "a": 1, "b": 2, "|": 3})
    logits = np.full((2, 4, 4), -1.0, np.float32)
    for t, k in enumerate([1, 0, 1, 2]):
        logits[:, t, k] = 1.0
    assert decoder.decode_logits(logits) == ["aab", "aab"]
    with pytest.raises(InputError, match=r"CTC logits must be \(batch, frames, vocab\), got shape \(4, 4\)"):
        decoder.decode_logits(logits[0])


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
    with pytest.raises(InputError, match="^cosine similarity of a zero embedding is undefined$"):
        cosine_similarity([0, 0], [1, 1])


def test_cosine_similarity_computes_in_float64_whatever_the_embeddings_dtype():
    # int8 products overflow and float16 sums reach inf: both must come out as the exact cosine
    for dtype, value in ((np.int8, 100), (np.float16, 300.0)):
        a, b = np.array([value, value], dtype), np.array([value, 0], dtype)
        assert cosine_similarity(a, b) == pytest.approx(1 / np.sqrt(2), abs=1e-12), dtype
        assert cosine_similarity(b, a) == pytest.approx(1 / np.sqrt(2), abs=1e-12), dtype
    assert cosine_similarity(np.ones((2, 3)), np.ones(6)) == pytest.approx(1.0)  # compared flat
    with pytest.raises(InputError, match=r"embeddings differ in size: \(3,\) vs \(2,\)"):
        cosine_similarity([1, 2, 3], [1, 2])


def _logits(ids, vocab: int = 6) -> np.ndarray:
    """(T, vocab) logits whose per-frame argmax is `ids`."""
    logits = np.zeros((len(ids), vocab), np.float32)
    logits[np.arange(len(ids)), ids] = 1.0
    return logits


@pytest.mark.parametrize("frames,expected", [
    ([1, 1, 2, 2, 2], [1, 2]),            # repeats collapse
    ([1, 0, 1], [1, 1]),                  # a blank between repeats keeps both
    ([0, 0, 0], []),                      # blanks only
    ([3], [3]),
    ([0, 3, 3, 0, 0, 4, 0, 4, 4, 5], [3, 4, 4, 5]),
    ([2, 2, 0, 2, 2, 0, 0], [2, 2]),
])
def test_greedy_ids_on_hand_made_frames(frames, expected):
    assert greedy_ids(_logits(frames), blank=0) == expected


def test_greedy_ids_of_no_frames_and_another_blank():
    assert greedy_ids(np.zeros((0, 4), np.float32), blank=0) == []
    assert greedy_ids(_logits([5, 5, 1, 5]), blank=5) == [1]  # the blank is the model's pad id, whatever it is


def test_greedy_ids_decode_as_transformers_decodes_the_argmax(tokenizer):
    """transformers groups repeats and drops the pad itself: decoding our collapsed ids without grouping
    must give its text for the raw per-frame argmax."""
    decoder = CTCTokenizer.from_dir(FIXTURE)
    rng = np.random.default_rng(1)
    blank, vocab = tokenizer.pad_token_id, len(tokenizer)
    for _ in range(100):
        frames = np.repeat(rng.integers(0, vocab, size=int(rng.integers(0, 30))), rng.integers(1, 4))
        logits = rng.standard_normal((len(frames), vocab)).astype(np.float32)
        logits[np.arange(len(frames)), frames] += 10.0
        ids = greedy_ids(logits, blank)
        assert blank not in ids and all(a != b or a == c for a, b, c in zip(ids, ids[1:], ids))
        assert tokenizer.decode(ids, group_tokens=False) == tokenizer.decode(frames.tolist())
        assert decoder.decode(ids, group_tokens=False) == tokenizer.decode(frames.tolist())


def test_edit_distance_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3 and edit_distance("", "") == 0
    assert edit_distance(["one", "two"], ["one", "three", "two"]) == 1


def test_error_rates_by_hand():
    cer, wer = error_rates(["four up one"], ["four up on"])
    assert cer == pytest.approx(100 * 1 / 10) and wer == pytest.approx(100 * 1 / 3)
    cer, wer = error_rates(["abc", "x y"], ["abd", "x z w"])  # summed over the set, not averaged
    # "x y" -> "x z w": y->z and " w" inserted (3 characters, 2 words)
    assert cer == pytest.approx(100 * (1 + 3) / (3 + 5)) and wer == pytest.approx(100 * (1 + 2) / (1 + 3))
    assert error_rates([""], [""]) == (0.0, 0.0)
    assert error_rates(["x"], [""]) == (100.0, 100.0)  # an empty reference counts as length 1


def test_softmax_normalises_each_row_on_its_own_and_survives_large_logits():
    logits = np.array([[1000.0, 999.0, 0.0], [0.0, 1.0, 2.0]])  # rows of very different scale
    probs = softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=-1), [1.0, 1.0], rtol=1e-12)
    expected = np.exp([[1.0, 0.0, -1000.0], [-2.0, -1.0, 0.0]])
    np.testing.assert_allclose(probs, expected / expected.sum(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(softmax(logits.T, axis=0), probs.T, rtol=1e-12)  # the axis given, not the last


def test_labels_a_config_does_not_name_are_their_index():
    labels = top_labels(np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]], np.float32), {"0": "no"})
    assert [r["label"] for r in labels] == ["1", "no"]
    assert set(labels[0]) == {"label", "probability", "scores"} and set(labels[0]["scores"]) == {"no", "1", "2"}
    assert labels[0]["probability"] == pytest.approx(max(labels[0]["scores"].values()))
    assert labels[1]["probability"] == pytest.approx(labels[1]["scores"]["no"])
    frames = frame_labels(np.array([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]]), {"0": "sil"}, [3])
    assert frames == [["1", "2", "sil"]]
