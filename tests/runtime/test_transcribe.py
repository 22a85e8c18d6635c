"""From sound files to text on the trained fixture, against transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from exporter.cli import main
from runtime import Session
from runtime.audio import load_audio
from runtime.errors import InputError
from tests.conftest import FIXTURE

SAMPLES = sorted((FIXTURE / "samples").glob("*.wav"))
TRANSCRIPTS = json.loads((FIXTURE / "samples" / "transcripts.json").read_text())


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from exporter.export import export

    return export(None, tmp_path_factory.mktemp("fixture") / "digits", with_frontend=True)


@pytest.fixture(scope="module")
def session(artifact):
    return Session(artifact)


def transformers_transcripts(waves):
    transformers = pytest.importorskip("transformers")
    model = transformers.Wav2Vec2BertForCTC.from_pretrained(str(FIXTURE)).eval()
    extractor = transformers.SeamlessM4TFeatureExtractor.from_pretrained(str(FIXTURE))
    tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(FIXTURE))
    batch = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    lengths = model._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1))
    ids = [row[:n].argmax(-1).tolist() for row, n in zip(logits, lengths)]
    return tokenizer.batch_decode(ids)


def test_transcripts_equal_transformers_on_a_padded_batch(session):
    waves = [load_audio(p) for p in SAMPLES]
    assert session.transcribe(waves, batch_size=len(waves)) == transformers_transcripts(waves)


def test_unbatched_transcripts_equal_transformers(session):
    for path in SAMPLES[:3]:
        assert session.transcribe([str(path)]) == transformers_transcripts([load_audio(path)])


def test_shipped_samples_are_transcribed_right(session):
    """Held-out sentences from the training voices (unseen voices: benchmarks/results/accuracy.md)."""
    texts = session.transcribe([str(p) for p in SAMPLES])
    assert texts == [TRANSCRIPTS[p.name]["text"] for p in SAMPLES]


def test_long_audio_is_chunked_with_overlap(session):
    """Six utterances back to back (12 s) in 4 s chunks with 1 s of context on each side."""
    from runtime.decode import edit_distance

    waves = [load_audio(p) for p in SAMPLES]
    recording = np.concatenate(waves)
    assert len(session.audio_runner(chunk_seconds=4.0, overlap_seconds=1.0)._chunks(recording)) >= 4
    chunked = session.transcribe([recording], chunk_seconds=4.0, overlap_seconds=1.0)[0]
    assert session.transcribe([recording], chunk_seconds=60.0)[0] == session.transcribe([recording])[0]
    # Compared with what the model says on each utterance alone, letters only: it emits no word
    # delimiter between utterances it heard separately in training. Chunking must keep every word,
    # cut or not by a chunk border (context changes may still flip a letter).
    alone = "".join(session.transcribe(waves)).replace(" ", "")
    errors = edit_distance(chunked.replace(" ", ""), alone)
    assert errors / len(alone) <= 0.05, (chunked, alone)


def test_cli_transcribe_text_and_json(artifact):
    runner = CliRunner()
    result = runner.invoke(main, ["-q", "transcribe", str(artifact), *map(str, SAMPLES)])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [text for _, text in lines] == Session(artifact).transcribe([str(p) for p in SAMPLES])
    assert lines[0][1] == TRANSCRIPTS[SAMPLES[0].name]["text"]
    result = runner.invoke(main, ["-q", "transcribe", "--json", str(artifact), str(SAMPLES[0])])
    assert json.loads(result.stdout.strip().splitlines()[-1])["text"] == TRANSCRIPTS[SAMPLES[0].name]["text"]


def test_cli_transcribe_bad_audio(artifact, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF....")
    result = CliRunner().invoke(main, ["transcribe", str(artifact), str(tmp_path / "bad.wav")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_frontend_variant_runs_from_raw_samples_alone(artifact, session):
    import onnxruntime as ort

    waves = [load_audio(p) for p in SAMPLES]
    lengths = np.array([len(w) for w in waves])
    batch = np.zeros((len(waves), lengths.max()), np.float32)
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    features, mask = session.audio_runner().features(waves)
    expected = session.run(features, mask)["logits"]
    for name in ("model.fp32.frontend.onnx", "model.fp32.frontend.cpu.onnx"):  # for CUDA, and its CPU form
        raw = ort.InferenceSession(str(artifact / name), providers=["CPUExecutionProvider"])
        logits, out_lengths = raw.run(None, {"waveform": batch, "waveform_lengths": lengths})
        assert np.abs(logits - expected).max() <= 1e-3
        np.testing.assert_array_equal(out_lengths, [int(n) for n in np.ceil(mask.sum(1) / 2)])
    via_session = Session(artifact, precision="fp32-frontend").run_frontend(batch, lengths)
    np.testing.assert_allclose(via_session["logits"], logits, atol=1e-6)  # the CPU form, loaded last
    with pytest.raises(InputError, match="takes raw audio"):
        Session(artifact, precision="fp32-frontend").run(features, mask)


@pytest.mark.parametrize("head", ["SequenceClassification", "AudioFrameClassification", "XVector", "Model"])
def test_cli_other_heads(tmp_path, head):
    """The CLI's JSON and saved arrays are the API's results for the same files."""
    runner = CliRunner()
    out = tmp_path / "a"
    assert runner.invoke(main, ["-q", "export", "tiny", "--head", head, "-o", str(out)]).exit_code == 0
    result = runner.invoke(main, ["-q", "transcribe", "--json", "--out-dir", str(tmp_path / "emb"),
                                  str(out), *map(str, SAMPLES[:2])])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    expected = Session(out).infer([str(p) for p in SAMPLES[:2]])
    assert [r["file"] for r in records] == [str(p) for p in SAMPLES[:2]]
    for record, want in zip(records, expected):
        if head == "SequenceClassification":
            assert record["label"]["label"] == want.label["label"] in Session(out).config["id2label"].values()
            assert record["label"]["scores"] == pytest.approx(want.label["scores"], abs=1e-6)
        elif head == "AudioFrameClassification":
            assert record["frame_labels"] == want.frame_labels and len(record["frame_labels"]) > 10
        else:
            saved = np.load(record["saved"])
            np.testing.assert_allclose(saved, want.embedding if head == "XVector" else want.hidden, atol=1e-6)
            assert saved.shape == ((32,) if head == "XVector" else (len(want.hidden), 64))


def test_verify_the_frontend_variant(artifact):
    result = CliRunner().invoke(main, ["verify", str(artifact), "--precision", "fp32-frontend"])
    assert result.exit_code == 0, result.output
    assert "output_lengths" in result.output and "parity ok" in result.output
