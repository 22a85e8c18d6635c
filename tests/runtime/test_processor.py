"""runtime.Processor against transformers' Wav2Vec2BertProcessor built from the bundled checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.parity.compare import assert_close
from runtime import Processor
from runtime.audio import load_audio
from runtime.errors import ArtifactError, InputError
from tests.conftest import FIXTURE

SAMPLES = sorted((FIXTURE / "samples").glob("*.wav"))


@pytest.fixture(scope="module")
def theirs():
    transformers = pytest.importorskip("transformers")
    return transformers.Wav2Vec2BertProcessor.from_pretrained(str(FIXTURE))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from exporter.export import export

    return export(None, tmp_path_factory.mktemp("proc") / "digits")


@pytest.fixture(scope="module", params=["checkpoint", "artifact"])
def ours(request, artifact):
    return Processor.from_pretrained(FIXTURE if request.param == "checkpoint" else artifact)


@pytest.fixture(scope="module")
def speech():
    return [load_audio(p) for p in SAMPLES]


def same_features(mine, hf, label):
    assert sorted(mine) == sorted(hf), label
    for key in hf:
        assert mine[key].shape == hf[key].shape and mine[key].dtype == hf[key].dtype, (label, key)
    assert_close({k: hf[k] for k in hf if k != "labels"}, {k: mine[k] for k in mine if k != "labels"},
                 "features", label)


def test_single_batched_and_padded_audio(ours, theirs, speech):
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000 * 3) * 0.05).astype(np.float32)
    cases = {"single": speech[0], "batch of 6": speech, "padded, odd lengths": [speech[2][:7777], noise, speech[1]],
             "2-D batch": np.stack([speech[3][:12000], noise[:12000]]), "list of one": list(speech[:1])}
    for label, audio in cases.items():
        same_features(ours(audio, sampling_rate=16000), theirs(audio, sampling_rate=16000, return_tensors="np"), label)
    mine = ours(speech, sampling_rate=16000, return_attention_mask=False, return_tensors=None)
    assert list(mine) == ["input_features"]
    assert mine.input_features is mine["input_features"]  # keys are attributes, as in a BatchFeature


def test_labels_from_text(ours, theirs, speech):
    # padding=True (our default) pads text too, as transformers does when asked; padding=False leaves it ragged
    for text in ("four up one", ["four up one", "two go"], ["Seven <unk>", "left left no"]):
        audio = speech[:1] if isinstance(text, str) else speech[:len(text)]
        for tensors in ("np", None):
            for padding in (True, False):
                mine = ours(audio if padding else audio[:1] * len(audio), text=text, sampling_rate=16000,
                            return_tensors=tensors, padding=padding)
                hf = theirs(audio, text=text, sampling_rate=16000, return_tensors=tensors,
                            **({"padding": True} if padding else {}))
                assert _plain(mine["labels"]) == _plain(hf["labels"]), (text, tensors, padding)
    for text in ("three six", ["three", "six six"]):
        for padding in (True, False):
            mine = ours(text=text, return_tensors=None, padding=padding)
            hf = theirs(text=text, **({"padding": True} if padding else {}))
            assert dict(mine) == dict(hf), (text, padding)
        mine, hf = ours(text=text), theirs(text=text, padding=True, return_tensors="np")
        assert all(np.array_equal(mine[k], hf[k]) for k in hf)


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value] if value.dtype == object or value.ndim > 1 else value.tolist()
    return value


def test_pad_features_and_labels(ours, theirs, speech):
    feats = [theirs.feature_extractor(w, sampling_rate=16000)["input_features"][0] for w in speech[:3]]
    labels = [{"input_ids": ours.tokenizer.encode(t)} for t in ("four up one", "two go", "seven")]
    mine = ours.pad(input_features=[{"input_features": f} for f in feats], labels=labels)
    hf = theirs.pad(input_features=[{"input_features": f} for f in feats], labels=labels, return_tensors="np")
    assert np.array_equal(mine["labels"], hf["labels"]) and mine["labels"].dtype == hf["labels"].dtype
    same_features(mine, hf, "pad")
    plain = ours.pad(input_features=feats)  # bare arrays, as our FeatureExtractor returns them
    assert np.array_equal(plain["input_features"], mine["input_features"])
    alone, hf_alone = ours.pad(labels=labels), theirs.pad(labels=labels, return_tensors="np")  # a tokenizer batch
    assert sorted(alone) == sorted(hf_alone) and all(np.array_equal(alone[k], hf_alone[k]) for k in hf_alone)


def test_decode_through_the_processor(ours, theirs):
    rng = np.random.default_rng(2)
    rows = [np.repeat(rng.integers(0, 24, 20), 2).tolist() for _ in range(10)]
    assert ours.batch_decode(rows) == theirs.batch_decode(rows)
    mine = ours.decode(rows[0], output_word_offsets=True)
    hf = theirs.decode(rows[0], output_word_offsets=True)
    assert mine.text == hf.text and [(w["word"], w["start_offset"], w["end_offset"]) for w in mine.word_offsets] == \
        [(w["word"], int(w["start_offset"]), int(w["end_offset"])) for w in hf.word_offsets]


def test_save_pretrained_loads_in_transformers(ours, tmp_path, speech):
    transformers = pytest.importorskip("transformers")
    written = ours.save_pretrained(tmp_path / "saved")
    assert {p.name for p in written} == {"preprocessor_config.json", "vocab.json", "tokenizer_config.json",
                                         "special_tokens_map.json"}
    assert not [p for p in (tmp_path / "saved").iterdir() if p.name.startswith(".")]  # no scratch left
    hf = transformers.Wav2Vec2BertProcessor.from_pretrained(str(tmp_path / "saved"))
    same_features(ours(speech, sampling_rate=16000), hf(speech, sampling_rate=16000, return_tensors="np"), "saved")
    rows = [[0, 5, 5, 4, 6, 1, 3, 3, 0, 9], [4, 4, 10, 0, 10]]
    assert ours.batch_decode(rows) == hf.batch_decode(rows)
    assert ours(text="four up", return_tensors=None)["input_ids"] == hf(text="four up")["input_ids"]
    again = Processor.from_pretrained(tmp_path / "saved")  # and in ours
    assert again.batch_decode(rows) == ours.batch_decode(rows)


def test_save_pretrained_keeps_existing_files(ours, tmp_path):
    (tmp_path / "vocab.json").write_text("mine")
    with pytest.raises(InputError, match="already exist; pass overwrite=True"):
        ours.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.json").read_text() == "mine"
    ours.save_pretrained(tmp_path, overwrite=True)
    assert (tmp_path / "vocab.json").read_text() != "mine"


def test_mistakes(ours, tmp_path, speech):
    with pytest.raises(InputError, match="numpy only"):
        ours(speech[0], return_tensors="pt")
    with pytest.raises(InputError, match="needs audio, text or both"):
        ours()
    with pytest.raises(InputError, match="sampled at 8000 Hz"):
        ours(speech[0], sampling_rate=8000)
    with pytest.raises(InputError, match="padding=False needs utterances of equal length"):
        ours(speech[:2], padding=False)
    with pytest.raises(InputError, match="padding='max_length' is not supported"):
        ours(speech[0], padding="max_length")
    with pytest.raises(InputError, match=r"expected \(frames, 160\)"):
        ours.pad(input_features=[np.zeros((4, 80), np.float32)])
    with pytest.raises(InputError, match="sampling_rate must be a whole number"):
        ours(speech[0], sampling_rate="x")
    with pytest.raises(InputError, match="text is an empty list"):
        ours(text=[])
    with pytest.raises(InputError, match="labels must be a list of id sequences"):
        ours.pad(labels=[5, 6])
    with pytest.raises(InputError, match="expected 'input_features'"):
        ours.pad(input_features=[{"x": 1}])
    with pytest.raises(InputError, match="batch_decode takes a list of id sequences"):
        ours.batch_decode(5)
    with pytest.raises(ArtifactError, match="neither manifest.json"):
        Processor.from_pretrained(tmp_path)
    no_tokenizer = Processor(ours.feature_extractor)
    with pytest.raises(InputError, match="no tokenizer"):
        no_tokenizer(text="four")
    with pytest.raises(InputError, match="no tokenizer"):
        no_tokenizer.batch_decode([[1, 2]])
