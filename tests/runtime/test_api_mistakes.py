"""Mistakes through the Python API: one rule for 2-D audio, typed options, and artifacts that were
edited or damaged after export (a bare .onnx included) refused with ArtifactError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from runtime import FeatureExtractor, Session
from runtime.audio import load_audio
from runtime.errors import ArtifactError, InputError

BUNDLED = Path(__file__).resolve().parents[2] / "exporter" / "data" / "w2vbert-digits"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from exporter.export import export

    return export(None, tmp_path_factory.mktemp("d") / "digits")


@pytest.fixture(scope="module")
def speech():
    return [load_audio(BUNDLED / "samples" / f"sample{i}.wav") for i in (0, 1)]


@pytest.mark.parametrize("threads", [1.5, "2", 0, True])
def test_threads_must_be_a_whole_number(digits, threads):
    with pytest.raises(InputError, match=f"threads must be >= 1 and a whole number .*got {threads!r}"):
        Session(digits, threads=threads)


def test_feature_extractor_refuses_unknown_parameters():
    with pytest.raises(InputError, match="unknown parameter.* foo, num_mel_bin; it takes sampling_rate"):
        FeatureExtractor(num_mel_bin=128, foo="bar")


def test_one_rule_for_2d_audio(digits, speech):
    n = min(len(w) for w in speech)
    batch = np.stack([w[:n] for w in speech])  # (2, N): a batch of two, everywhere
    features, _ = FeatureExtractor()(batch)
    assert features.shape[0] == 2
    session = Session(digits)
    assert session.transcribe(batch) == session.transcribe([batch[0], batch[1]])
    with pytest.raises(InputError, match=r"shape \(\d+, 2\) looks like \(samples, channels\)"):
        session.transcribe(np.stack([speech[0], speech[0]], axis=1))  # stereo (N, 2)
    with pytest.raises(InputError, match=r"audio 0 has shape \(2, \d+\); one utterance is 1-D samples"):
        session.transcribe([batch])  # a 2-D array inside a list: ambiguous, refused


def test_bare_onnx_refuses_every_byte_flip(digits, tmp_path):
    bare = tmp_path / "model.onnx"
    shutil.copy(digits / "model.fp32.cpu.onnx", bare)
    Session(bare).run(np.zeros((1, 20, 160), np.float32))  # intact: loads and runs
    data = bare.read_bytes()
    rng = np.random.default_rng(0)
    positions = sorted(set(rng.choice(np.arange(1, len(data) - 1), 34, replace=False).tolist()) | {0, len(data) - 1})
    assert len(positions) == 36
    for at in positions:  # 36 flips over the whole file, metadata and weights alike
        flipped = bytearray(data)
        flipped[at] ^= 0x20
        bare.write_bytes(bytes(flipped))
        with pytest.raises(ArtifactError):
            Session(bare)
    bare.write_bytes(data)


@pytest.mark.parametrize("field,value", [(("config", "hidden_size"), 128), (("head",), "XVector"),
                                         (("preprocessor", "num_mel_bins"), 128)])
def test_edited_manifest_is_refused(digits, tmp_path, field, value):
    art = Path(shutil.copytree(digits, tmp_path / "art"))
    manifest = json.loads((art / "manifest.json").read_text())
    target = manifest
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"says {'.'.join(field)} = .*the manifest was edited"):
        Session(art)


def test_nan_weights_unverified_blame_the_artifact(digits, tmp_path):
    art = Path(shutil.copytree(digits, tmp_path / "art"))
    path = art / "model.fp32.cpu.onnx"
    model = onnx.load(str(path))
    weight = max(model.graph.initializer, key=lambda t: np.prod(t.dims))  # a large weight matrix
    weight.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(weight), np.nan), weight.name))
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match="sha256"):
        Session(art)  # verified: the damage is found on load
    with pytest.raises(ArtifactError, match="non-finite output .* the artifact may be damaged"):
        Session(art, verify=False).run(np.zeros((1, 20, 160), np.float32))


def test_a_relative_artifact_path_survives_a_change_of_directory(digits, speech, monkeypatch):
    """A Session, a pipeline and a Processor made from "artifact" keep working after os.chdir."""
    from runtime import Processor, pipeline

    monkeypatch.chdir(digits.parent)
    session, asr = Session(digits.name), pipeline("automatic-speech-recognition", model=digits.name)
    processor = Processor.from_pretrained(digits.name)
    expected = Session(digits).transcribe([speech[0]])
    monkeypatch.chdir(Path(__file__).parent)
    assert session.transcribe([speech[0]]) == expected  # the tokenizer is read on the first call
    assert asr(speech[0])["text"] == expected[0]
    assert processor.batch_decode(np.array([[1, 2, 3]])) == Processor.from_pretrained(digits).batch_decode(
        np.array([[1, 2, 3]]))
    assert session.path.is_absolute() and session.manifest.root == digits
