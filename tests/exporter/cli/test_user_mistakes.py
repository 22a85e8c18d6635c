"""Every common mistake on every command: one line naming what was given and what is expected,
the exit code of its kind, and nothing of the user's removed or overwritten."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.export import export
from exporter.model.sources import BUNDLED

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = BUNDLED / "samples" / "sample0.wav"


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    """Artifacts the cases read (never write): tiny (Model), XVector, the bundled CTC model + front end."""
    root = tmp_path_factory.mktemp("arts")
    return {"tiny": export("tiny", root / "tiny"),
            "xvector": export("tiny", root / "xvector", head="XVector"),
            "digits": export(None, root / "digits", with_frontend=True)}


@dataclass
class Case:
    name: str
    setup: Callable[[Path, dict], list[str]]  # (tmp dir, artifacts) -> command line; may create files
    exit_code: int
    message: str
    keep: list[str] = field(default_factory=list)  # paths under tmp that must still exist, unchanged
    absent: list[str] = field(default_factory=list)  # paths under tmp that must not exist


def _file(tmp: Path, name: str, text: str = "mine") -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _artifact_copy(tmp: Path, arts: dict, name: str, key: str = "tiny") -> Path:
    return Path(shutil.copytree(arts[key], tmp / name))


def _triton_repo(tmp: Path) -> Path:
    _file(tmp, "repo/w2vbert_model_fp32/config.pbtxt", "name: \"w2vbert_model_fp32\"")
    return tmp / "repo"


def _missing_file(tmp: Path, arts: dict) -> list[str]:
    art = _artifact_copy(tmp, arts, "art")
    (art / "model.fp32.cpu.onnx").unlink()
    return ["inspect", str(art)]


def _xvector_saves(tmp: Path, arts: dict, existing: bool) -> list[str]:
    shutil.copy(SAMPLE, tmp / "a.wav")
    if existing:
        _file(tmp, "emb/a.npy", "earlier result")
        return ["transcribe", str(arts["xvector"]), str(tmp / "a.wav"), "--out-dir", str(tmp / "emb")]
    (tmp / "x").mkdir()
    shutil.copy(SAMPLE, tmp / "x" / "a.wav")
    return ["transcribe", str(arts["xvector"]), str(tmp / "a.wav"), str(tmp / "x" / "a.wav"),
            "--out-dir", str(tmp / "emb")]


HELD: list = []  # sockets the serve case keeps bound while its command runs


def _busy_port() -> str:
    import socket

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    HELD.append(held)
    return str(held.getsockname()[1])


def _free_port() -> str:
    from exporter.targets.triton_server import free_ports

    return str(free_ports(1)[0])


CASES = [
    # --- data lost or silently wrong
    Case("force-into-a-user-dir", lambda t, a: (_file(t, "userdir/notes.txt"),
         ["export", "tiny", "-o", str(t / "userdir"), "--force"])[1], 2, "no w2vbert artifact",
         keep=["userdir/notes.txt"]),
    Case("force-into-the-current-dir", lambda t, a: (_file(t, "here/notes.txt"), os.chdir(t / "here"),
         ["export", "tiny", "-o", ".", "--force"])[2], 2, "is the current directory", keep=["here/notes.txt"]),
    Case("force-over-an-artifact-with-user-files", lambda t, a: (_file(_artifact_copy(t, a, "art"), "mine.txt"),
         ["export", "tiny", "-o", str(t / "art"), "--force"])[1], 2, "also holds mine.txt", keep=["art/mine.txt"]),
    Case("triton-models-replaced-silently", lambda t, a: ["export", "tiny", "-o", str(t / "out"), "--triton-repo",
         str(_triton_repo(t))], 2, "pass --force to replace those models",
         keep=["repo/w2vbert_model_fp32/config.pbtxt"],
         absent=["out"]),
    Case("npy-name-clash", lambda t, a: _xvector_saves(t, a, existing=False), 2, "would both be saved as",
         absent=["emb"]),
    Case("npy-overwritten", lambda t, a: _xvector_saves(t, a, existing=True), 2, "pass --overwrite",
         keep=["emb/a.npy"]),
    # --- tracebacks instead of one line
    Case("out-under-proc", lambda t, a: ["export", "tiny", "-o", "/proc/w2vbert-x"], 2, "cannot be created"),
    Case("out-under-a-file",
         lambda t, a: (_file(t, "file.flac"), ["export", "tiny", "-o", str(t / "file.flac/sub")])[1],
         2, "is a file, not a directory", keep=["file.flac"]),
    Case("triton-repo-is-a-file", lambda t, a: (_file(t, "some.flac"), ["export", "tiny", "-o", str(t / "out"),
         "--triton-repo", str(t / "some.flac")])[1], 2, "is not a directory", keep=["some.flac"], absent=["out"]),
    Case("benchmark-durations", lambda t, a: ["benchmark", "--durations", "abc"], 2, "not a comma-separated list"),
    Case("opset-99", lambda t, a: ["export", "tiny", "-o", str(t / "out"), "--opset", "99"], 2,
         "opset 99 is outside 17..20", absent=["out"]),
    # --- exit codes
    Case("output-exists", lambda t, a: (_artifact_copy(t, a, "art"), ["export", "tiny", "-o", str(t / "art")])[1], 2,
         "already exists; pass --force", keep=["art/manifest.json"]),
    Case("precision-fp8", lambda t, a: ["export", "tiny", "-o", str(t / "out"), "--precision", "fp8"], 2,
         "precision 'fp8' is unknown", absent=["out"]),
    Case("gate-bogus", lambda t, a: ["export", "tiny", "-o", str(t / "out"), "--gate", "bogus=1"], 2,
         "gate override 'bogus=1'", absent=["out"]),
    Case("gate-key-the-head-lacks", lambda t, a: ["export", "tiny", "--head", "XVector", "-o", str(t / "out"),
         "--precision", "fp32,int8", "--gate", "max_cer=1"], 2, "max_cer does not apply", absent=["out"]),
    Case("engine-without-tensorrt", lambda t, a: ["export", "tiny", "-o", str(t / "out"), "--engine"], 2,
         "--engine needs --target tensorrt", absent=["out"]),
    Case("verify-precision-bogus", lambda t, a: ["verify", str(a["tiny"]), "--precision", "bogus"], 2,
         "has no such variant; it has fp32"),
    Case("benchmark-threads-0", lambda t, a: ["benchmark", "--threads", "0"], 2, "0 is not in the range x>=1"),
    Case("transcribe-threads-0", lambda t, a: ["transcribe", str(a["digits"]), str(SAMPLE), "--threads", "0"], 2,
         "0 is not in the range x>=1"),
    Case("inspect-missing-file", _missing_file, 5, "is missing model.fp32.cpu.onnx"),
    Case("serve-a-precision-it-lacks", lambda t, a: ["serve", str(a["digits"]), "--precision", "int8"], 2,
         "has no int8 variant to serve; it has fp32 (w2vbert export --precision fp32,int8 adds it)"),
    Case("serve-on-a-port-in-use", lambda t, a: ["serve", str(a["digits"]), "--http-port", _busy_port(),
         "--grpc-port", _free_port(), "--metrics-port", _free_port()], 2, "is not free (Address already in use)"),
    # --- output and habits
    Case("transcribe-a-directory", lambda t, a: ["transcribe", str(a["digits"]), str(t)], 2,
         "is a directory; pass audio files"),
    Case("transcribe-tiny-chunks", lambda t, a: ["transcribe", str(a["digits"]), str(SAMPLE), "--chunk-seconds", "0.1",
         "--overlap-seconds", "0"], 2, "chunk_seconds must be >= 1"),
    Case("transcribe-negative-overlap", lambda t, a: ["transcribe", str(a["digits"]), str(SAMPLE),
         "--overlap-seconds", "-1"], 2, "overlap_seconds must be >= 0"),
    Case("transcribe-frontend-variant", lambda t, a: ["transcribe", str(a["digits"]), str(SAMPLE), "--precision",
         "fp32-frontend"], 2, "use --precision fp32 (the same model)"),
]


def _snapshot(tmp: Path, names: list[str]) -> dict[str, bytes]:
    return {n: (tmp / n).read_bytes() for n in names}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mistake_gets_one_line_and_keeps_user_files(case, arts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # cases may chdir deeper; monkeypatch restores the cwd
    args = case.setup(tmp_path, arts)
    before = _snapshot(tmp_path, case.keep)
    entries = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(main, args)
    assert result.exit_code == case.exit_code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and case.message in errors[0], result.output
    assert "Traceback" not in result.output
    assert _snapshot(tmp_path, case.keep) == before  # nothing of the user's removed or changed
    for name in case.absent:
        assert not (tmp_path / name).exists(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == entries  # and nothing left behind (staging, ..old-*)


def test_transcribe_reports_each_bad_file_and_goes_on(arts, tmp_path):
    _file(tmp_path, "bad.wav", "not audio")
    result = CliRunner().invoke(main, ["transcribe", str(arts["digits"]), str(SAMPLE), str(tmp_path / "bad.wav")])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert any(line.startswith(f"{SAMPLE}\t") for line in lines)  # the good file's transcript is printed
    assert any(line.startswith("error: cannot read") and "bad.wav" in line for line in lines)
    assert "1 of 2 audio files could not be read" in lines[-1]


def test_transcribe_overwrite_flag_replaces_a_saved_array(arts, tmp_path):
    shutil.copy(SAMPLE, tmp_path / "a.wav")
    _file(tmp_path, "emb/a.npy", "earlier result")
    result = CliRunner().invoke(main, ["transcribe", str(arts["xvector"]), str(tmp_path / "a.wav"), "--out-dir",
                                       str(tmp_path / "emb"), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "emb" / "a.npy").shape == (32,)


def test_force_replaces_an_artifact_and_triton_models_written_by_us(arts, tmp_path):
    art = _artifact_copy(tmp_path, arts, "art")
    (tmp_path / "empty").mkdir()
    assert CliRunner().invoke(main, ["export", "tiny", "-o", str(tmp_path / "empty")]).exit_code == 0
    result = CliRunner().invoke(main, ["export", "tiny", "-o", str(art), "--force", "--triton-repo",
                                       str(_triton_repo(tmp_path))])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "repo" / "w2vbert_model_fp32" / "1" / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "empty", "repo"]


def test_ctc_checkpoint_without_vocab_warns(tmp_path):
    source = Path(shutil.copytree(BUNDLED, tmp_path / "ckpt"))
    (source / "vocab.json").unlink()
    result = CliRunner().invoke(main, ["export", str(source), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0 and "has no vocab.json" in result.output


def test_version_inspect_json_and_quiet_after_the_command(arts, tmp_path):
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "version 0.1.0" in result.output
    result = CliRunner().invoke(main, ["inspect", str(arts["tiny"]), "--json"])
    assert json.loads(result.output)["head"] == "Model"
    result = CliRunner().invoke(main, ["export", "tiny", "-o", str(tmp_path / "q"), "-q"])
    assert result.exit_code == 0 and "[w2vbert]" not in result.output


BLOCK = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] == {blocked!r}:
                raise ModuleNotFoundError('No module named ' + repr(name), name=name)
    sys.meta_path.insert(0, _Block())
    sys.argv = ['w2vbert'] + {args!r}
    from exporter.cli import main
    main()
""")


@pytest.mark.parametrize("blocked,args,extra", [
    ("torch", ["export", "tiny", "-o", "out"], "export"),
    ("torch", ["verify", "ART"], "export"),
    ("torch", ["benchmark", "--quick"], "export"),
    ("onnxruntime", ["transcribe", "ART", str(SAMPLE)], "cpu"),
])
def test_missing_extra_exits_8_with_the_pip_command(arts, tmp_path, blocked, args, extra):
    args = [str(arts["tiny"]) if a == "ART" else a for a in args]
    done = subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked, args=args)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 8, done.stderr
    assert f"pip install 'w2vbert-deploy[{extra}]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("precisions", ["fp32,int8,int8-qdq", "int4", "fp16,int4"])
def test_export_prints_only_our_own_lines(tmp_path, precisions):
    """torch's C++ shape-inference warnings, onnxruntime's quantization advice and its int4 quantizer's
    line per MatMul (it calls logging.basicConfig(level=INFO) on import) stay out."""
    done = subprocess.run([sys.executable, "-m", "exporter.cli", "export", "-o", str(tmp_path / "a"), "--precision",
                           precisions], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    foreign = [line for line in done.stderr.splitlines() if not line.startswith(("[w2vbert]", "  "))]
    assert foreign == []


def test_verbose_export_shows_the_libraries_warnings(tmp_path):
    verbose = subprocess.run([sys.executable, "-m", "exporter.cli", "-v", "export", "-o", str(tmp_path / "b"),
                              "--precision", "fp32,int8"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "Please consider" in verbose.stderr  # -v shows the libraries' own warnings
