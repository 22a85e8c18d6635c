"""`w2vbert export --sherpa-onnx`: the bundled CTC model in sherpa-onnx's Python API, its C++ binary
and our C++ host (no Python at run time), each transcribing exactly as runtime.Session does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

sherpa_onnx = pytest.importorskip("sherpa_onnx", reason="needs sherpa-onnx (the test extra) for this platform")

from exporter.cli import main  # noqa: E402
from exporter.export import export  # noqa: E402
from exporter.model.sources import BUNDLED  # noqa: E402
from exporter.steps.precisions import QuantOptions  # noqa: E402
from exporter.targets.sherpa_onnx import decode_waves as decode  # noqa: E402
from runtime import Session  # noqa: E402
from runtime.audio import load_audio  # noqa: E402
from runtime.decode import edit_distance  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted((BUNDLED / "samples").glob("*.wav"))


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return export(None, tmp_path_factory.mktemp("sherpa") / "digits", precisions=("fp32", "int8"), sherpa_onnx=True,
                  quant=QuantOptions())


@pytest.fixture(scope="module")
def expected(art):
    return Session(art).transcribe([load_audio(p) for p in SAMPLES])


def recognizer(art, model="model.onnx"):
    return sherpa_onnx.OfflineRecognizer.from_fire_red_asr_ctc(model=str(art / "sherpa-onnx" / model),
                                                               tokens=str(art / "sherpa-onnx" / "tokens.txt"))


def test_files_are_listed_hashed_and_verified(art):
    manifest = json.loads((art / "manifest.json").read_text())
    entry = manifest["sherpa_onnx"]
    assert entry["subsampling_factor"] == 4  # 2 (stacking) x 2 (one adapter layer)
    for name in ("sherpa-onnx/model.onnx", "sherpa-onnx/model.int8.onnx", "sherpa-onnx/tokens.txt",
                 "sherpa-onnx/README.txt"):
        assert name in manifest["files"] and len(manifest["files"][name]["sha256"]) == 64
    assert entry["int8"]["gate"]["passed"]
    tokens = (art / "sherpa-onnx" / "tokens.txt").read_text().splitlines()
    assert tokens[0] == "<blk> 0" and any(line.startswith("\u2581 ") for line in tokens)
    result = CliRunner().invoke(main, ["verify", str(art)])
    assert result.exit_code == 0 and "sherpa-onnx parity and int8 gate ok" in result.output, result.output


def test_python_api_transcribes_as_the_session_one_by_one_and_batched(art, expected):
    rec = recognizer(art)
    waves = [load_audio(p) for p in SAMPLES]
    one = decode(rec, waves, batched=False)
    assert [s.result.text for s in one] == expected
    assert [s.result.text for s in decode(rec, waves, batched=True)] == expected
    step = 0.01 * 4  # 10 ms x subsampling_factor
    for stream in one:
        times = np.array(stream.result.timestamps)
        assert len(times) and np.allclose(times / step, np.round(times / step), atol=1e-3)


def test_int8_transcripts_pass_our_int8_gate(art, expected):
    texts = [s.result.text for s in decode(recognizer(art, "model.int8.onnx"), [load_audio(p) for p in SAMPLES], True)]
    errors = sum(edit_distance(list(t), list(e)) for t, e in zip(texts, expected))
    assert 100.0 * errors / sum(len(e) for e in expected) <= 0.5  # the int8 gate's max_cer


def test_offline_binary_transcribes_as_the_session(art, expected):
    # The console script sits beside the interpreter: found there whether or not the venv is activated
    beside = Path(sys.executable).parent / "sherpa-onnx-offline"
    binary = str(beside) if beside.is_file() else shutil.which("sherpa-onnx-offline")
    if binary is None:
        pytest.skip("sherpa-onnx-bin (the sherpa-onnx-offline binary) is not installed")
    done = subprocess.run([binary, f"--fire-red-asr-ctc={art / 'sherpa-onnx' / 'model.onnx'}",
                           f"--tokens={art / 'sherpa-onnx' / 'tokens.txt'}", *map(str, SAMPLES)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    texts = [json.loads(line)["text"] for line in done.stdout.splitlines() if line.startswith("{")]
    assert texts == expected


def test_cpp_host_without_python_transcribes_as_the_session(art, expected, tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("needs g++ (apt-get install g++)")
    sherpa = Path(sherpa_onnx.__file__).parent
    host = tmp_path / "sherpa_host"
    build = subprocess.run(["g++", "-O1", "-std=c++17", "-D_GLIBCXX_USE_CXX11_ABI=0",
                            str(ROOT / "runtime" / "embed" / "sherpa_host.cpp"), "-o", str(host),
                            f"-I{sherpa / 'include'}", f"-L{sherpa / 'lib'}", "-lsherpa-onnx-cxx-api",
                            "-lsherpa-onnx-c-api", f"-Wl,-rpath,{sherpa / 'lib'}"], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr
    linked = subprocess.run(["ldd", str(host)], capture_output=True, text=True).stdout
    assert "libpython" not in linked  # no Python at run time
    done = subprocess.run([str(host), str(art / "sherpa-onnx" / "model.onnx"), str(art / "sherpa-onnx" / "tokens.txt"),
                           *map(str, SAMPLES)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line.split("\t", 1)[1] for line in done.stdout.splitlines()] == expected


def test_graph_on_transformers_log_mel_equals_our_fp32_variant(art):
    transformers = pytest.importorskip("transformers")
    import onnxruntime as ort

    theirs = transformers.SeamlessM4TFeatureExtractor()
    wave = load_audio(SAMPLES[0])
    logmel = theirs._extract_fbank_features(wave)  # the log-mel before its normalisation
    graph = ort.InferenceSession(str(art / "sherpa-onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, lengths = graph.run(None, {"x": logmel[None].astype(np.float32), "x_lens": np.array([len(logmel)])})
    full = theirs(wave, sampling_rate=16000, return_tensors="np")
    ours = Session(art).run(full["input_features"], full["attention_mask"])["logits"]
    assert int(lengths[0]) == ours.shape[1]
    np.testing.assert_allclose(logits, ours, atol=1e-4)


def test_a_head_other_than_ctc_is_refused_before_any_work(tmp_path):
    result = CliRunner().invoke(main, ["export", "tiny", "-o", str(tmp_path / "out"), "--sherpa-onnx"])
    assert result.exit_code == 2 and "--sherpa-onnx exports CTC heads" in result.output
    assert not (tmp_path / "out").exists()


def test_a_vocab_with_gaps_is_refused(tmp_path):
    from exporter.targets.sherpa_onnx import tokens_text
    from runtime.errors import ExportError

    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": 0, "|": 1, "a": 3}))
    with pytest.raises(ExportError, match=r"no token for output id\(s\) \[2\] of the model's 4"):
        tokens_text(tmp_path, 4)


@pytest.mark.slow
def test_over_2gb_export_loads_in_sherpa(tmp_path):
    """The 600M architecture with a CTC head (random weights): model.onnx + ONE model.onnx.data."""
    from safetensors.torch import save_file

    from exporter.model.checkpoint import load_model

    model = load_model("w2v-bert-2.0", head="CTC")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt / "model.safetensors"))
    config = {**model.config.to_dict(), "architectures": ["Wav2Vec2BertForCTC"]}
    (ckpt / "config.json").write_text(json.dumps(config))
    vocab = {"<pad>": 0, "|": 1, **{f"t{i}": i + 2 for i in range(config["vocab_size"] - 2)}}
    (ckpt / "vocab.json").write_text(json.dumps(vocab))
    del model
    art = export(str(ckpt), tmp_path / "art", sherpa_onnx=True)
    assert (art / "sherpa-onnx" / "model.onnx.data").stat().st_size > 2 * 1024 ** 3
    streams = decode(recognizer(art), [load_audio(SAMPLES[0])], batched=False)
    assert isinstance(streams[0].result.text, str)
