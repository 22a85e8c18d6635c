"""Word timestamps: Session.transcribe(timestamps=True) and `w2vbert transcribe --timestamps --format ...`,
on the bundled samples and on a long concatenation of them that is chunked with seams through words."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from exporter.cli import main
from runtime import Session
from runtime.audio import load_audio
from runtime.subtitles import cues, to_srt, to_vtt
from tests.conftest import FIXTURE

SAMPLES = sorted((FIXTURE / "samples").glob("*.wav"))
TRANSCRIPTS = json.loads((FIXTURE / "samples" / "transcripts.json").read_text())
RATE = 16000
CHUNK, OVERLAP = 4.0, 1.0  # keep regions [0, 2), [2, 4), ...: a seam every 2 s


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from exporter.export import export

    return export(None, tmp_path_factory.mktemp("stamps") / "digits")


@pytest.fixture(scope="module")
def session(artifact):
    return Session(artifact)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """(path, samples, start of each placed sample): the six samples three times over, 0.1 s apart
    (~36 s: 18 chunks of 4 s)."""
    import soundfile as sf

    pieces = [piece for _ in range(3) for p in SAMPLES for piece in (load_audio(p), np.zeros(RATE // 10, np.float32))]
    starts = np.cumsum([0] + [len(p) for p in pieces])[:-1:2] / RATE
    path = tmp_path_factory.mktemp("long") / "long.wav"
    audio = np.concatenate(pieces)
    sf.write(path, audio, RATE, subtype="FLOAT")
    return path, audio, starts


def check_words(words: list[dict], duration: float, expected: list[str]) -> None:
    assert [w["word"] for w in words] == expected
    for w in words:
        assert 0 <= w["start"] < w["end"] <= duration, w
    for a, b in zip(words, words[1:]):
        assert a["end"] <= b["start"], (a, b)  # monotonic, never overlapping


def test_sample_words_are_the_transcripts(session):
    results = session.transcribe([str(p) for p in SAMPLES], timestamps=True)
    for path, result in zip(SAMPLES, results):
        assert result["text"] == TRANSCRIPTS[path.name]["text"]
        check_words(result["words"], len(load_audio(path)) / RATE, result["text"].split())
    assert session.transcribe(str(SAMPLES[0])) == [TRANSCRIPTS[SAMPLES[0].name]["text"]]  # plain text stays


def test_chunked_long_audio_keeps_every_word_once_with_global_times(session, artifact, long_recording):
    from runtime import pipeline
    from runtime.decode import edit_distance

    _, audio, starts = long_recording
    duration = len(audio) / RATE
    options = {"chunk_seconds": CHUNK, "overlap_seconds": OVERLAP}
    chunked = session.transcribe(audio, timestamps=True, **options)[0]
    assert chunked["text"] == session.transcribe(audio, **options)[0]
    check_words(chunked["words"], duration, chunked["text"].split())
    # The reference: each utterance transcribed alone (the model was trained on such clips; on 36 s
    # in one piece it garbles), its word times shifted to where the utterance sits.
    alone = session.transcribe([load_audio(p) for p in SAMPLES], timestamps=True) * 3
    reference = [{**w, "start": w["start"] + t, "end": w["end"] + t} for t, r in zip(starts, alone) for w in r["words"]]
    # Seams every 2 s cut reference words; the chunked run has the same letters there, at the same
    # place: not duplicated by the two chunks that see the word, not dropped by either. Compared by
    # letter times: between utterances the model's word delimiter depends on what it hears around
    # (it may join two words), and context may flip a letter; the frame bookkeeping at seams is
    # checked exactly in tests/runtime/test_chunking.py.
    asr = pipeline("automatic-speech-recognition", model=artifact, chunk_length_s=CHUNK, stride_length_s=OVERLAP)
    chars = [c for c in asr(audio, return_timestamps="char")["chunks"] if c["text"] != " "]
    seams = np.arange(CHUNK - 2 * OVERLAP, duration, CHUNK - 2 * OVERLAP)
    cut = [w for w in reference if any(w["start"] < s < w["end"] for s in seams)]
    assert len(cut) >= 3, "seams every 2 s cut several words of ~36 s of speech"
    for word in cut:
        hits = [c for c in chars if c["timestamp"][0] < word["end"] and word["start"] < c["timestamp"][1]]
        assert edit_distance("".join(c["text"] for c in hits), word["word"]) <= 1, (word, hits)


def test_cli_srt_of_each_sample_parses_and_matches(artifact):
    srt = pytest.importorskip("srt")
    runner = CliRunner()
    for path in SAMPLES:
        result = runner.invoke(main, ["-q", "transcribe", str(artifact), str(path), "--timestamps", "--format", "srt"])
        assert result.exit_code == 0, result.output
        subs = list(srt.parse(result.output))
        assert " ".join(s.content for s in subs) == TRANSCRIPTS[path.name]["text"]
        _check_cues([(s.start.total_seconds(), s.end.total_seconds()) for s in subs], len(load_audio(path)) / RATE)


def test_cli_long_audio_srt_json_and_vtt(artifact, long_recording, tmp_path):
    srt = pytest.importorskip("srt")
    webvtt = pytest.importorskip("webvtt")
    path, audio, _ = long_recording
    expected = Session(artifact).transcribe(audio, chunk_seconds=CHUNK, overlap_seconds=OVERLAP)[0]
    chunks = ["--chunk-seconds", str(CHUNK), "--overlap-seconds", str(OVERLAP)]
    runner = CliRunner()
    out = runner.invoke(main, ["-q", "transcribe", str(artifact), str(path), "--format", "srt", *chunks])
    assert out.exit_code == 0, out.output
    subs = list(srt.parse(out.output))
    assert " ".join(s.content for s in subs) == expected
    _check_cues([(s.start.total_seconds(), s.end.total_seconds()) for s in subs], len(audio) / RATE)
    line = runner.invoke(main, ["-q", "transcribe", str(artifact), str(path), "--json", "--timestamps", *chunks])
    record = json.loads(line.output)
    assert record["text"] == expected and [w["word"] for w in record["words"]] == expected.split()
    # several files: one .vtt each in --out-dir
    vtt = runner.invoke(main, ["-q", "transcribe", str(artifact), str(path), str(SAMPLES[0]), "--format", "vtt",
                               "--out-dir", str(tmp_path / "subs"), *chunks])
    assert vtt.exit_code == 0, vtt.output
    captions = webvtt.read(str(tmp_path / "subs" / "long.vtt"))
    assert " ".join(c.text for c in captions) == expected
    _check_cues([(_vtt_seconds(c.start), _vtt_seconds(c.end)) for c in captions], len(audio) / RATE)
    sample = webvtt.read(str(tmp_path / "subs" / f"{SAMPLES[0].stem}.vtt"))
    assert " ".join(c.text for c in sample) == TRANSCRIPTS[SAMPLES[0].name]["text"]


def _vtt_seconds(clock: str) -> float:
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _check_cues(times: list[tuple[float, float]], duration: float) -> None:
    assert times
    for start, end in times:
        assert 0 <= start < end <= duration + 0.0005  # clock text is rounded to milliseconds
    for (_, end), (start, _) in zip(times, times[1:]):
        assert end <= start


def test_cues_break_at_pauses_and_length():
    words = [{"word": "a" * 10, "start": i * 0.5, "end": i * 0.5 + 0.4} for i in range(8)]
    words.append({"word": "late", "start": 10.0, "end": 10.3})
    grouped = cues(words)
    assert [c["text"] for c in grouped][-1] == "late"  # a 6 s pause starts a new cue
    assert all(len(c["text"]) <= 42 and c["end"] - c["start"] <= 5.0 for c in grouped)
    assert " ".join(c["text"] for c in grouped).split() == [w["word"] for w in words]
    assert to_srt([]) == ""
    assert "&lt;unk&gt; a&amp;b" in to_vtt([{"word": "<unk>", "start": 0.0, "end": 0.2},
                                            {"word": "a&b", "start": 0.3, "end": 0.5}])


def test_timestamps_need_a_ctc_head(tmp_path):
    runner = CliRunner()
    out = tmp_path / "xv"
    assert runner.invoke(main, ["-q", "export", "tiny", "--head", "XVector", "-o", str(out)]).exit_code == 0
    result = runner.invoke(main, ["-q", "transcribe", str(out), str(SAMPLES[0]), "--format", "srt"])
    assert result.exit_code == 2 and "--format srt needs a CTC model" in result.output


def test_out_dir_that_is_a_file_is_refused_before_running(artifact, tmp_path):
    (tmp_path / "afile").write_text("mine")
    result = CliRunner().invoke(main, ["-q", "transcribe", str(artifact), *map(str, SAMPLES[:2]), "--format", "srt",
                                       "--out-dir", str(tmp_path / "afile")])
    assert result.exit_code == 2 and "is a file" in result.output
    assert (tmp_path / "afile").read_text() == "mine"


def test_format_options_disagreeing(artifact):
    result = CliRunner().invoke(main, ["-q", "transcribe", str(artifact), str(SAMPLES[0]), "--json", "--format", "vtt"])
    assert result.exit_code == 2 and "--json and --format vtt disagree" in result.output


def test_samples_per_frame_multiplies_the_adapter_stride_per_layer():
    from runtime.timestamps import samples_per_frame

    assert samples_per_frame({"add_adapter": False}, 2) == 320
    assert samples_per_frame({"add_adapter": True, "adapter_stride": 2, "num_adapter_layers": 3}, 2) == 320 * 8
    assert samples_per_frame({"add_adapter": True, "adapter_stride": 3, "num_adapter_layers": 2}, 1) == 160 * 9


def test_span_ends_after_its_last_frame_and_is_clipped_to_the_recording():
    from runtime.timestamps import Alignment

    starts = np.array([0, 640, 1280, 1920])
    alignment = Alignment(ids=np.zeros(4, np.int64), starts=starts, frame_samples=640, total_samples=16000,
                          sampling_rate=16000)
    assert alignment.span(1, 3) == (0.04, 0.12)  # frames 1 and 2: 640 / 16000 to (1280 + 640) / 16000
    short = Alignment(ids=np.zeros(4, np.int64), starts=starts, frame_samples=640, total_samples=2000,
                      sampling_rate=16000)
    assert short.span(2, 4) == (0.08, 0.125)  # the last frame overhangs the 2000 samples: clipped
