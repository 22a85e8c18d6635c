"""Chunk layout of long audio: keep regions tile the recording, context is bounded."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import Session
from runtime.errors import InputError
from runtime.features import MIN_SAMPLES


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from exporter.export import export

    return Session(export(None, tmp_path_factory.mktemp("a") / "digits"))


# 3.05, 6.02 and 9.05 s leave, without overlap, a last piece shorter than 4 frames of analysis (a sliver),
# after 1, 2 and 3 whole chunks: the chunk before it must take it
@pytest.mark.parametrize("seconds", [0.5, 3.05, 4.0, 6.02, 9.05, 9.99, 10.0, 31.3, 600.0])
@pytest.mark.parametrize("chunk,overlap", [(4.0, 1.0), (30.0, 2.0), (3.0, 0.0)])
def test_keep_regions_tile_the_recording(session, seconds, chunk, overlap):
    rate = 16000
    wave = np.zeros(int(seconds * rate), np.float32)
    pipe = session.audio_runner(chunk_seconds=chunk, overlap_seconds=overlap)
    chunks = pipe._chunks(wave)
    covered = 0  # the recording is covered by consecutive keep regions, without gap or overlap
    for start, audio, keep_from, keep_to in chunks:
        offset = (audio.__array_interface__["data"][0] - wave.__array_interface__["data"][0]) // 4
        assert offset == start and start % pipe.frame_samples == 0  # chunks start on the output-frame grid
        assert offset + keep_from == covered
        assert 0 <= keep_from <= keep_to <= len(audio)
        assert keep_from <= int(overlap * rate)  # context on the left is bounded
        assert len(audio) >= min(len(wave), 4 * MIN_SAMPLES)
        covered = offset + keep_to
    assert covered == len(wave)
    assert max(len(a) for _, a, _, _ in chunks) <= int(chunk * rate) + 4 * MIN_SAMPLES


def _speech(seconds: float) -> np.ndarray:
    """The bundled samples, each followed by 0.5 s of silence, repeated to `seconds` of audio."""
    from runtime.audio import load_audio
    from tests.conftest import FIXTURE

    samples = [load_audio(p) for p in sorted((FIXTURE / "samples").glob("*.wav"))]
    parts, total, i = [], 0, 0
    while total < seconds * 16000:
        parts += [samples[i % len(samples)], np.zeros(8000, np.float32)]
        total += len(parts[-2]) + 8000
        i += 1
    return np.concatenate(parts)[: int(seconds * 16000)]


def test_long_recording_equals_its_chunks_run_one_by_one(session):
    """95 s in 20 s chunks with 2 s of context, batched by 2: the transcript is what running each chunk
    alone and keeping its centre gives, computed here from the documented layout with Session.run."""
    from runtime import FeatureExtractor
    from runtime.tokenizer import CTCTokenizer

    wave, rate, spf = _speech(95.0), 16000, 640  # 640 samples per output frame: 40 ms for the bundled model
    step, overlap = 16 * rate, 2 * rate  # keep regions on a 20 - 2 x 2 s grid
    extractor, ids = FeatureExtractor.from_params(session.preprocessor), []
    for centre in range(0, len(wave), step):
        lo, hi = max(0, centre - overlap), min(len(wave), centre + step + overlap)
        features, mask = extractor([wave[lo:hi]])
        frames = session.run(features, mask)["logits"][0].argmax(-1)
        ids.append(frames[(centre - lo) // spf: (min(centre + step, len(wave)) - lo) // spf])
    expected = CTCTokenizer.from_dir(session.manifest.root).decode(np.concatenate(ids))
    got = session.transcribe([wave], chunk_seconds=20, overlap_seconds=2, batch_size=2)
    assert got == [expected] and len(expected.split()) > 40


def test_bad_chunk_options(session):
    with pytest.raises(InputError, match="must exceed twice overlap_seconds"):
        session.audio_runner(chunk_seconds=2.0, overlap_seconds=1.0)
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        session.audio_runner(batch_size=0)


@pytest.mark.parametrize("seconds", [3.3, 31.3, 95.0])
@pytest.mark.parametrize("chunk,overlap", [(4.0, 1.0), (30.0, 2.0), (3.0, 0.0), (5.03, 0.77)])
def test_seams_keep_every_frame_once_at_its_global_time(session, monkeypatch, seconds, chunk, overlap):
    """A model whose frame k of the recording always says token(k), wherever the chunk starts: the
    stitched frames must be token(0), token(1), ... with frame k at k x 40 ms, across every seam."""
    rate = 16000
    wave = np.zeros(int(seconds * rate), np.float32)
    pipe = session.audio_runner(chunk_seconds=chunk, overlap_seconds=overlap)
    spf = pipe.frame_samples

    def token(frames):
        return np.where(frames % 5 == 4, 0, 5 + (frames // 5) % 19)  # runs of 4 letters, then a blank

    def frames_of(samples):  # the model's output frames for this many samples (fbank, stacking, adapter)
        _, mask = pipe.features([np.zeros(samples, np.float32)])
        return pipe._lengths(mask)[0]

    def run_sorted(chunks, handler):
        out = []
        for audio in chunks:
            start = (audio.__array_interface__["data"][0] - wave.__array_interface__["data"][0]) // 4
            out.append(token(start // spf + np.arange(frames_of(len(audio)))))
        return out

    monkeypatch.setattr(pipe, "run_sorted", run_sorted)
    alignment = pipe.align([wave])[0]
    frames = np.arange(len(alignment.ids))
    assert abs(len(alignment.ids) - frames_of(len(wave))) <= 1  # the last chunk's rounding may keep one less
    np.testing.assert_array_equal(alignment.ids, token(frames))
    np.testing.assert_array_equal(alignment.starts, frames * spf)
    words = pipe.decoder.decode(alignment.ids, output_word_offsets=True).word_offsets
    assert words == pipe.decoder.decode(token(frames), output_word_offsets=True).word_offsets


def test_pipeline_fits_a_tensorrt_profile(session, monkeypatch):
    """With a plan whose profile ends at batch 2 and 300 frames (6 s), the pipeline's defaults
    (batch 8, 30 s chunks, a merged short tail) shrink to fit instead of failing every call."""
    monkeypatch.setattr(Session, "engine_limits", property(lambda self: (2, 300)))
    pipe = session.audio_runner()
    assert pipe.batch_size == 2 and pipe.chunk % pipe.frame_samples == 0
    for seconds in (5.9, 6.2, 61.0, 95.3):
        wave = np.zeros(int(seconds * 16000), np.float32)
        for _, audio, _, _ in pipe._chunks(wave):
            _, mask = pipe.features([audio])
            assert mask.shape[1] <= 300, (seconds, len(audio))


def test_a_sliver_is_taken_by_the_chunk_before_it(session):
    pipe = session.audio_runner(chunk_seconds=3.0, overlap_seconds=0.0)
    wave = np.zeros(int(9.05 * 16000), np.float32)
    chunks = pipe._chunks(wave)
    assert [(start, len(audio), keep_from, keep_to) for start, audio, keep_from, keep_to in chunks] == \
        [(0, 48000, 0, 48000), (48000, 48000, 0, 48000), (96000, 48800, 0, 48800)]


def test_no_audio_and_alignment_without_a_ctc_head_are_refused(session, tmp_path):
    from exporter.export import export

    with pytest.raises(InputError, match="^no audio given$"):
        session.audio_runner()([])
    classifier = Session(export("tiny", tmp_path / "cls", head="SequenceClassification"))
    with pytest.raises(InputError, match="^frame alignment needs a CTC head; this model's head is "
                                         "SequenceClassification$"):
        classifier.audio_runner().align([np.zeros(16000, np.float32)])


def test_results_as_json():
    from runtime.audio_runner import Result

    assert Result(text="one", words=[{"word": "one", "start": 0.1, "end": 0.3}]).to_json() == \
        {"text": "one", "words": [{"word": "one", "start": 0.1, "end": 0.3}]}
    embedded = Result(embedding=np.array([1.5, -2.0], np.float32)).to_json()
    assert embedded == {"embedding": [1.5, -2.0]} and all(type(v) is float for v in embedded["embedding"])
    assert Result(hidden=np.zeros((3, 4), np.float32), label="x").to_json() == {"label": "x", "hidden_shape": [3, 4]}
