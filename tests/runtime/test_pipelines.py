"""runtime.pipeline against transformers.pipeline on the same models.

transformers reads a path through the ffmpeg binary, which these machines lack; where we pass
a path, transformers gets the samples of that file (soundfile decodes a 16-bit wav to exactly
what ffmpeg's f32le output holds: value / 32768).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from exporter.parity.compare import assert_close
from runtime import pipeline
from runtime.audio import load_audio
from runtime.errors import InputError
from tests.conftest import FIXTURE, make_hf_model, tiny_config_dict

SAMPLES = sorted((FIXTURE / "samples").glob("*.wav"))
LABELS = {0: "yes", 1: "no", 2: "up", 3: "down"}


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def ctc_artifact(tmp_path_factory):
    from exporter.export import export

    return export(None, tmp_path_factory.mktemp("asr") / "digits")


@pytest.fixture(scope="module")
def hf_asr(transformers):
    return transformers.pipeline("automatic-speech-recognition", model=str(FIXTURE))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, transformers):
    """(checkpoint dir, artifact) of a tiny seeded SequenceClassification model with named labels."""
    from exporter.export import export

    root = tmp_path_factory.mktemp("clf")
    model = make_hf_model("SequenceClassification", tiny_config_dict(
        "relative_key", num_labels=len(LABELS), id2label=LABELS, label2id={v: k for k, v in LABELS.items()}))
    model.save_pretrained(root / "ckpt")
    shutil.copy(FIXTURE / "preprocessor_config.json", root / "ckpt")
    return root / "ckpt", export(str(root / "ckpt"), root / "artifact")


def same_asr(mine: dict, hf: dict, label: str) -> None:
    assert mine["text"] == hf["text"], label
    assert ("chunks" in mine) == ("chunks" in hf), label
    if "chunks" in hf:
        assert [c["text"] for c in mine["chunks"]] == [c["text"] for c in hf["chunks"]], label
        def times(out):
            return {"timestamp": np.array([c["timestamp"] for c in out["chunks"]]).reshape(-1, 2)}

        assert_close(times(hf), times(mine), "pipeline", label)


@pytest.mark.parametrize("stamps", [None, "word", "char"])
def test_speech_recognition_equals_transformers(ctc_artifact, hf_asr, stamps):
    asr = pipeline("automatic-speech-recognition", model=ctc_artifact)
    options = {"return_timestamps": stamps} if stamps else {}
    for path in SAMPLES:
        wave = load_audio(path)
        hf = hf_asr(wave.copy(), **options)
        assert hf["text"], "the bundled model transcribes every sample"
        same_asr(asr(str(path), **options), hf, f"path {path.name}")
        same_asr(asr(wave, **options), hf, f"array {path.name}")
        same_asr(asr({"raw": wave, "sampling_rate": 16000}, **options), hf, f"dict {path.name}")
        same_asr(asr({"array": wave, "sampling_rate": 16000, "path": "x"}, **options), hf, f"datasets {path.name}")
    batch = asr([str(p) for p in SAMPLES], batch_size=4, **options)
    hf_batch = hf_asr([load_audio(p) for p in SAMPLES], **options)
    assert len(batch) == len(SAMPLES)
    for i, (mine, hf) in enumerate(zip(batch, hf_batch)):
        same_asr(mine, hf, f"batch item {i}")


def test_word_chunks_of_the_bundled_samples_are_the_transcripts(ctc_artifact):
    asr = pipeline("automatic-speech-recognition", model=ctc_artifact, return_timestamps="word")
    transcripts = json.loads((FIXTURE / "samples" / "transcripts.json").read_text())
    for path, out in zip(SAMPLES, asr([str(p) for p in SAMPLES], batch_size=3)):
        assert [c["text"] for c in out["chunks"]] == out["text"].split() == transcripts[path.name]["text"].split()


def test_resampled_dict_input(ctc_artifact):
    from runtime.audio import resample

    asr = pipeline("automatic-speech-recognition", model=ctc_artifact)
    wave = load_audio(SAMPLES[0])
    narrow = resample(wave, 16000, 8000)  # band-limited to 4 kHz: the tiny model hears "gour" for "four"
    assert asr({"raw": narrow, "sampling_rate": 8000}) == asr(resample(narrow, 8000, 16000))
    assert asr({"raw": resample(wave, 16000, 48000), "sampling_rate": 48000})["text"] == asr(wave)["text"]


def test_audio_classification_equals_transformers(classifier, transformers):
    checkpoint, artifact = classifier
    ours = pipeline("audio-classification", model=artifact)
    hf = transformers.pipeline("audio-classification", model=str(checkpoint))
    waves = [load_audio(p) for p in SAMPLES]
    for options in ({}, {"top_k": 2}, {"top_k": None}, {"top_k": 99}, {"function_to_apply": "sigmoid"},
                    {"function_to_apply": "none"}):
        cases = [(str(SAMPLES[0]), waves[0]), (waves[1], waves[1]),
                 ({"raw": waves[2], "sampling_rate": 16000}, waves[2])]
        for mine_in, hf_in in cases:
            mine, theirs = ours(mine_in, **options), hf(hf_in.copy(), **options)
            _same_labels(mine, theirs, options)
        mine, theirs = ours([str(p) for p in SAMPLES], batch_size=4, **options), hf(waves, **options)
        assert len(mine) == len(theirs) == len(SAMPLES)
        for m, t in zip(mine, theirs):
            _same_labels(m, t, options)


def _same_labels(mine: list, theirs: list, options: dict) -> None:
    assert [r["label"] for r in mine] == [r["label"] for r in theirs], options
    assert_close({"score": np.array([r["score"] for r in theirs])}, {"score": np.array([r["score"] for r in mine])},
                 "pipeline", str(options))


def test_pipeline_mistakes(ctc_artifact, classifier):
    with pytest.raises(InputError, match="task 'text-generation' is not offered"):
        pipeline("text-generation", model=ctc_artifact)
    with pytest.raises(InputError, match="needs a SequenceClassification head; this model's head is CTC"):
        pipeline("audio-classification", model=ctc_artifact)
    with pytest.raises(InputError, match="needs a CTC head"):
        pipeline("automatic-speech-recognition", model=classifier[1])
    asr = pipeline("automatic-speech-recognition", model=ctc_artifact)
    wave = load_audio(SAMPLES[0])
    with pytest.raises(InputError, match="return_timestamps=True: a CTC model gives 'word' or 'char'"):
        asr(wave, return_timestamps=True)
    with pytest.raises(InputError, match="unknown option"):
        asr(wave, top_k=3)
    with pytest.raises(InputError, match="a pipeline takes mono 1-D samples"):
        asr(np.stack([wave, wave]))
    with pytest.raises(InputError, match="expected 'raw' \\(or 'array'\\) samples and their 'sampling_rate'"):
        asr({"raw": wave})
    with pytest.raises(InputError, match="does not exist"):
        asr("missing.wav")
    with pytest.raises(InputError, match="input 0 is a int"):
        asr(3)
    with pytest.raises(InputError, match="cannot read input 0 \\(bytes\\) as audio"):
        asr(b"not audio")
    assert asr(SAMPLES[0].read_bytes())["text"] == asr(wave)["text"]
    clf = pipeline("audio-classification", model=classifier[1])
    assert clf(wave, top_k=0) == []  # as transformers
    with pytest.raises(InputError, match="top_k must be a whole number >= 0"):
        clf(wave, top_k="x")
    for bad in ("x", None, 0, -8000):
        with pytest.raises(InputError, match="sampling_rate must be a whole number of Hz > 0"):
            asr({"raw": wave, "sampling_rate": bad})
    with pytest.raises(InputError, match="chunk_length_s must be a number of seconds"):
        asr(wave, chunk_length_s="x")
    with pytest.raises(InputError, match="batch_size must be a whole number >= 1"):
        asr([wave], batch_size=0)
    with pytest.raises(InputError, match="function_to_apply='relu'"):
        clf(wave, function_to_apply="relu")
