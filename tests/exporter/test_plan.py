"""exporter.plan: every option checked before any slow work, each refusal with its whole message, and
what a plan carries (no export runs here; the plans are made, not executed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.plan import TritonPlan, check_out, check_precision, check_triton, make_plan, triton_model_name
from runtime.errors import InputError, OptionError
from runtime.precisions import PRECISIONS


def refused(call, message: str):
    with pytest.raises(OptionError) as caught:
        call()
    assert str(caught.value) == message


def test_precisions_and_their_targets():
    for precision, row in PRECISIONS.items():
        for target in row.targets:
            check_precision(precision, target)
    refused(lambda: check_precision("fp8", "ort"), "precision 'fp8' is unknown; expected one of fp32, fp16, int8, "
                                                   "int8-qdq, bf16, int4")
    refused(lambda: check_precision("int8", "tensorrt"), "precision int8 cannot target tensorrt: it needs "
            "onnxruntime-only operators (use int8-qdq: explicit Q/DQ that TensorRT builds)")
    refused(lambda: check_precision("int4", "tensorrt"), "precision int4 cannot target tensorrt: it needs "
            "onnxruntime-only operators")


def test_triton_model_names():
    assert triton_model_name("w2vbert_ctc", "int8-qdq") == "w2vbert_ctc_int8_qdq"
    assert triton_model_name("enc", "fp32") == "enc_fp32"


def test_check_out_accepts_new_and_empty_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_out(tmp_path / "new" / "deeper", force=False)
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", force=False)


def _artifact_dir(path: Path, extra: list[str] = ()) -> Path:
    path.mkdir(parents=True)
    files = {"model.fp32.onnx": {}, "sherpa-onnx/model.onnx": {}}
    (path / "manifest.json").write_text(json.dumps({"schema": "w2vbert-deploy/artifact", "files": files}))
    (path / "model.fp32.onnx").write_text("x")
    (path / "sherpa-onnx").mkdir()
    for name in extra:
        (path / name).write_text("mine")
    return path


def test_check_out_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(lambda: check_out(tmp_path, True), f"output {tmp_path} is the current directory or holds it; choose a new "
                                               "directory for OUT")
    refused(lambda: check_out(tmp_path.parent, True), f"output {tmp_path.parent} is the current directory or holds it; "
                                                      "choose a new directory for OUT")
    (tmp_path / "file").write_text("x")
    refused(lambda: check_out(tmp_path / "file", True), f"output {tmp_path / 'file'} exists and is not a directory; "
                                                        "choose a new directory for OUT")
    refused(lambda: check_out(tmp_path / "file" / "sub", True),
            f"output {tmp_path / 'file' / 'sub'} cannot be created: {tmp_path / 'file'} is a file, not a directory")
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt"):
        (mine / name).write_text("x")
    refused(lambda: check_out(mine, True), f"output {mine} holds a.txt, b.txt, c.txt and 2 more and is no w2vbert "
                                           "artifact: --force only replaces an artifact written by w2vbert; choose "
                                           "another OUT")
    (mine / "manifest.json").write_text(json.dumps({"schema": "other", "files": {}}))
    with pytest.raises(OptionError, match="and is no w2vbert artifact"):
        check_out(mine, True)
    (mine / "manifest.json").write_text("[1, 2]")
    with pytest.raises(OptionError, match="and is no w2vbert artifact"):
        check_out(mine, True)
    art = _artifact_dir(tmp_path / "art")
    refused(lambda: check_out(art, False), f"output {art} already exists; pass --force to replace it")
    check_out(art, True)  # files and folders its manifest lists: replaceable
    art2 = _artifact_dir(tmp_path / "art2", ["notes.txt", "z.txt", "y.txt", "x.txt"])
    refused(lambda: check_out(art2, True),
            f"output {art2} is a w2vbert artifact but also holds notes.txt, x.txt, y.txt, which its manifest does not "
            "list; move them away before replacing it")


def test_check_out_where_nothing_can_be_created():
    with pytest.raises(OptionError, match=r"^output /proc/w2vbert-x cannot be created in /proc: "):
        check_out(Path("/proc/w2vbert-x"), False)


def test_check_triton(tmp_path):
    plan = TritonPlan(tmp_path / "repo")
    check_triton(plan, "CTC", ["fp32"], force=False)  # not there yet: fine
    (tmp_path / "file").write_text("x")
    refused(lambda: check_triton(TritonPlan(tmp_path / "file"), "CTC", ["fp32"], False),
            f"--triton-repo {tmp_path / 'file'} exists and is not a directory")
    refused(lambda: check_triton(TritonPlan(tmp_path / "file" / "repo"), "CTC", ["fp32"], False),
            f"--triton-repo {tmp_path / 'file' / 'repo'} cannot be created: {tmp_path / 'file'} is a file, not a "
            "directory")
    repo = tmp_path / "repo"
    (repo / "w2vbert_ctc_fp32").mkdir(parents=True)
    (repo / "w2vbert_ctc_fp32" / "config.pbtxt").write_text("name")
    (repo / "w2vbert_ctc_audio").mkdir()
    refused(lambda: check_triton(plan, "CTC", ["fp32", "int8"], True),
            f"--triton-repo {repo} holds w2vbert_ctc_audio, which are not Triton models written by w2vbert (no "
            "config.pbtxt); refusing to replace them")
    (repo / "w2vbert_ctc_audio" / "config.pbtxt").write_text("name")
    refused(lambda: check_triton(plan, "CTC", ["fp32", "int8"], False),
            f"--triton-repo {repo} already holds w2vbert_ctc_fp32, w2vbert_ctc_audio; pass --force to replace those "
            "models (only folders holding a config.pbtxt are ever replaced)")
    check_triton(plan, "CTC", ["fp32", "int8"], True)
    check_triton(TritonPlan(repo, name="other"), "CTC", ["fp32"], False)  # another prefix touches nothing


def test_make_plan_reads_the_source_and_carries_every_choice(tmp_path):
    plan = make_plan("tiny", tmp_path / "a", head="CTC", opset=18, precisions=("fp32", "int8"), force=True,
                     with_frontend=True, triton=TritonPlan(tmp_path / "repo"))
    assert (plan.head, plan.out, plan.opset, plan.precisions, plan.target) == ("CTC", tmp_path / "a", 18,
                                                                               ("fp32", "int8"), "ort")
    assert plan.force and plan.with_frontend and plan.triton.repo == tmp_path / "repo" and not plan.sherpa_onnx
    assert plan.engine is None and plan.profile is None and plan.engine_cache is None
    assert plan.config.hidden_size == 64 and plan.min_frames == 1
    assert make_plan("tiny", tmp_path / "b").head == "Model"  # the config's own head by default
    standard = make_plan("tiny", tmp_path / "c", precisions=("fp32", "fp16", "int8-qdq"), target="tensorrt",
                         engine_cache=str(tmp_path / "cache"))
    assert standard.engine_precisions == ["fp32", "fp16", "int8"] and standard.engine_cache == tmp_path / "cache"


def test_make_plan_refusals(tmp_path):
    out = tmp_path / "a"
    refused(lambda: make_plan("tiny", out, target="tflite"),
            "target 'tflite' is unknown; expected one of ort, tensorrt")
    for opset in (16, 21):
        refused(lambda opset=opset: make_plan("tiny", out, opset=opset),
                f"opset {opset} is outside 17..20 (LayerNormalization needs 17; torch's TorchScript exporter stops "
                "at 20)")
    make_plan("tiny", out, opset=17)
    make_plan("tiny", out, opset=20)
    refused(lambda: make_plan("tiny", out, engine={}), "--engine needs --target tensorrt (engines are built from "
                                                       "standard-op ONNX)")
    refused(lambda: make_plan("tiny", out, precisions=("int8",), target="tensorrt"), "precision int8 cannot target "
            "tensorrt: it needs onnxruntime-only operators (use int8-qdq: explicit Q/DQ that TensorRT builds)")
    refused(lambda: make_plan("tiny", out, sherpa_onnx=True), "--sherpa-onnx exports CTC heads (sherpa-onnx's "
            "fire_red_asr_ctc model type); this export's head is Model")
    refused(lambda: make_plan("tiny", out, head="CTC", sherpa_onnx=True), "--sherpa-onnx needs the checkpoint's "
            "vocab.json for tokens.txt; tiny has none")
    assert make_plan(None, out, sherpa_onnx=True).sherpa_onnx  # the bundled model has its vocab.json
    assert not out.exists()  # planning writes nothing


def test_engine_plan_without_tensorrt_is_refused_before_any_work(tmp_path):
    from runtime.errors import DependencyError

    with pytest.raises(DependencyError, match="tensorrt"):
        make_plan("tiny", tmp_path / "a", target="tensorrt", engine={"opt_batch": 2, "max_batch": 4})
    # the profile is checked first, TensorRT or not
    with pytest.raises(InputError, match=r"^profile batch: need 1 <= min <= opt <= max, got 1, 9, 4$"):
        make_plan("tiny", tmp_path / "a", target="tensorrt", engine={"opt_batch": 9, "max_batch": 4})


def test_how_many_entries_a_refusal_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for count, shown in ((3, "a.txt, b.txt, c.txt"), (4, "a.txt, b.txt, c.txt and 1 more")):
        mine = tmp_path / f"mine{count}"
        mine.mkdir()
        for name in ("a.txt", "b.txt", "c.txt", "d.txt")[:count]:
            (mine / name).write_text("x")
        refused(lambda mine=mine: check_out(mine, True),
                f"output {mine} holds {shown} and is no w2vbert artifact: --force only replaces an artifact written "
                "by w2vbert; choose another OUT")


def test_an_artifact_with_nested_folders_is_ours(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    art = tmp_path / "art"
    (art / "transformers-js" / "onnx").mkdir(parents=True)
    (art / "manifest.json").write_text(json.dumps({"schema": "w2vbert-deploy/artifact",
                                                   "files": {"transformers-js/onnx/model.onnx": {}}}))
    check_out(art, True)  # the top folder of a listed file two levels down is listed


def test_check_out_names_the_systems_reason():
    refused(lambda: check_out(Path("/proc/w2vbert-x"), False),
            "output /proc/w2vbert-x cannot be created in /proc: No such file or directory")


def test_every_foreign_folder_of_a_repository_is_named(tmp_path):
    repo = tmp_path / "repo"
    (repo / "w2vbert_ctc_fp32").mkdir(parents=True)
    (repo / "w2vbert_ctc_audio").mkdir()
    refused(lambda: check_triton(TritonPlan(repo), "CTC", ["fp32"], True),
            f"--triton-repo {repo} holds w2vbert_ctc_fp32, w2vbert_ctc_audio, which are not Triton models written "
            "by w2vbert (no config.pbtxt); refusing to replace them")


def test_make_plan_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = make_plan("tiny")
    assert plan.out == Path("w2vbert-artifact") and not plan.force and not plan.with_frontend
    assert plan.source.name == "tiny" and plan.source.kind == "preset" and plan.precisions == ("fp32",)


def test_make_plan_passes_force_and_every_precision_on(tmp_path, monkeypatch):
    """An artifact and Triton models there already: refused without --force, replaced with it; the fp32
    model (always built) and each precision's model are the ones looked for."""
    monkeypatch.chdir(tmp_path)
    art = _artifact_dir(tmp_path / "art")
    repo = tmp_path / "repo"
    for model in ("w2vbert_ctc_fp32", "w2vbert_ctc_int8"):
        (repo / model).mkdir(parents=True)
        (repo / model / "config.pbtxt").write_text("name")
        with pytest.raises(OptionError, match=f"already holds {model}; pass --force"):
            make_plan(None, tmp_path / "new", precisions=("fp32", "int8") if model.endswith("int8") else (),
                      triton=TritonPlan(repo))
        (repo / model / "config.pbtxt").unlink()
        (repo / model).rmdir()
    (repo / "w2vbert_ctc_fp32").mkdir()
    (repo / "w2vbert_ctc_fp32" / "config.pbtxt").write_text("name")
    plan = make_plan(None, art, precisions=("fp32", "int8"), force=True, triton=TritonPlan(repo))
    assert plan.force and plan.head == "CTC"


def test_engines_need_tensorrt_named_with_its_extra(tmp_path, monkeypatch):
    import sys

    from runtime.errors import DependencyError

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not importable, whatever is installed
    with pytest.raises(DependencyError) as caught:
        make_plan("tiny", tmp_path / "a", target="tensorrt", engine={})
    text = str(caught.value)
    assert text.startswith("building TensorRT engines (TensorRT engines need an NVIDIA GPU")
    assert "needs the Python package 'tensorrt'" in text and text.endswith("pip install 'w2vbert-deploy[gpu]'")


def test_the_engine_profile_never_asks_for_fewer_frames_than_the_model_needs(tmp_path, monkeypatch):
    import runtime.errors
    import runtime.trt_cache

    monkeypatch.setattr(runtime.errors, "require", lambda *a, **k: None)
    monkeypatch.setattr(runtime.trt_cache, "gpu_identity", lambda: ("GPU", "9.0"))
    plan = make_plan("tiny", tmp_path / "a", head="XVector", target="tensorrt",
                     engine={"min_seconds": 0.01, "opt_seconds": 0.02})
    assert plan.min_frames > 1 and plan.profile.min_frames == plan.min_frames  # the TDNN's receptive field
