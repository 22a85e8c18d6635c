"""Benchmark harness logic on tiny models, without timing assertions."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from benchmarks.flops import frames_for_seconds, model_flops
from benchmarks.harness import Grid, interleaved_order, stats
from exporter.model.presets import preset_config


def test_grid_cases_cover_every_duration_and_batch():
    grid = Grid(durations=(1.0, 5.0, 10.0), batches=(1, 4), threads=2, repeats=3)
    assert grid.cases() == [(1.0, 1), (5.0, 1), (10.0, 1), (1.0, 4), (5.0, 4), (10.0, 4)]


def test_interleaving_rotates_and_runs_each_backend_once_per_round():
    rounds = interleaved_order(["A", "B", "C"], 4)
    assert rounds == [["A", "B", "C"], ["B", "C", "A"], ["C", "A", "B"], ["A", "B", "C"]]
    for r in rounds:
        assert sorted(r) == ["A", "B", "C"]


def test_stats():
    s = stats([3.0, 1.0, 2.0, 10.0])
    assert s["min"] == 1.0 and s["median"] == 2.5 and s["runs"] == 4 and 3.0 < s["p90"] <= 10.0


def test_frames_for_seconds_matches_the_feature_extractor():
    import numpy as np

    from runtime.features import FeatureExtractor

    for seconds in (1.0, 5.0, 10.0):
        features, _ = FeatureExtractor()(np.zeros(int(seconds * 16000), np.float32) + 0.01)
        assert frames_for_seconds(seconds) == features.shape[1]
    assert frames_for_seconds(10.0) == 499


def test_flops_of_w2v_bert_2_0_by_hand():
    """24 layers, C=1024, FFN 4096, relative_key 64/8, kernel 31, T=500 frames, batch 1."""
    c, i, t, r, k, layers = 1024, 4096, 500, 73, 31, 24
    ffn = 2 * (2 * 2 * t * c * i)
    attention = 8 * t * c * c + 4 * t * t * c + 2 * t * r * c
    conv = 2 * t * c * 2 * c + 2 * t * c * k + 2 * t * c * c
    expected = 2 * t * 160 * c + layers * (ffn + attention + conv)
    config = preset_config("w2v-bert-2.0").to_dict()
    assert model_flops(config, "Model", t) == expected
    assert 600e9 < expected < 610e9  # ~605 GFLOP; transformers' (T, T, D) position term adds 12 more
    assert model_flops(config, "Model", t, batch=4) == 4 * expected


def test_flops_grow_with_adapter_and_ctc_head():
    config = preset_config("tiny").to_dict()
    base = model_flops(config, "Model", 100)
    assert model_flops(config, "CTC", 100) == base + 2 * 100 * 64 * config["vocab_size"]


def test_worker_env_sets_or_clears_the_wait_policy(monkeypatch):
    from benchmarks.harness import worker_env

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # inherited from the caller's shell
    assert worker_env(2, spin=False)["OMP_WAIT_POLICY"] == "PASSIVE"
    spinning = worker_env(2, spin=True)
    assert spinning["OMP_NUM_THREADS"] == "2"
    assert not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"} & set(spinning)


@pytest.mark.parametrize("spin", [False, True], ids=["idle-threads-sleep", "library-default-spin"])
def test_quick_benchmark_end_to_end_writes_schema(tmp_path, spin, monkeypatch):
    """The real harness on the tiny preset: workers, JSON schema, markdown and a PNG."""
    import tempfile

    from benchmarks.run import benchmark

    grid = Grid(durations=(1.0,), batches=(1,), threads=1, warmup=0, repeats=2, spin=spin)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    # one run keeps its exports in --work-dir, the other in a temporary directory it must remove
    data = benchmark("tiny", tmp_path / "out", grid, work_dir=None if spin else tmp_path / "work")
    assert list((tmp_path / "tmp").glob("w2vbert-bench-*")) == []
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["schema"] == "w2vbert-deploy/benchmark" and saved["schema_version"] == 1
    for key in ("machine", "versions", "peaks", "grid", "model", "backends", "skipped", "results"):
        assert key in saved
    names = {r["backend"] for r in saved["results"]}
    assert {"transformers eager", "reference eager", "plain export (ORT)", "ours fp32 (ort)"} <= names
    for result in saved["results"]:
        assert result["latency"]["runs"] == 2 and result["latency"]["min"] > 0
        assert result["flops"] == model_flops(saved["model"] and preset_config("tiny").to_dict(), "Model",
                                              result["frames"])
    for fact in saved["backends"].values():
        assert fact["peak_rss_bytes"] > 10e6 and fact["load_seconds"] > 0
    assert saved["peaks"]["fp32"] > 0 and saved["peaks"]["int8"] > 0
    assert saved["peaks_after"]["fp32"] > 0 and saved["peaks_after"]["int8"] > 0
    for peer in ("openvino", "ctranslate2"):  # the peers' versions are recorded where they are installed
        assert (peer in saved["versions"]) is (importlib.util.find_spec(peer) is not None)
    text = (tmp_path / "out" / "results.md").read_text()
    assert text.count("| ours fp32 (ort)") == 1
    assert text.count("| ours fp32 (OpenVINO)") == (importlib.util.find_spec("openvino") is not None)
    assert f"after the grid fp32 {saved['peaks_after']['fp32']:.0f}, int8 {saved['peaks_after']['int8']:.0f}" in text
    assert saved["grid"]["spin"] is spin and all(f["spec"]["spin"] is spin for f in saved["backends"].values())
    assert ("spin-wait as each library does" in (tmp_path / "out" / "results.md").read_text()) is spin
    assert (tmp_path / "out" / "latency_batch1.png").stat().st_size > 10_000
    assert data["plots"]
    # every backend's output was compared with transformers' on the same input
    parity = {name: fact["parity"] for name, fact in saved["backends"].items()}
    assert parity["transformers eager"]["max_abs"] == 0
    for name in ("reference eager", "ours fp32 (ort)", "plain export (ORT)"):
        assert parity[name]["against"] == "transformers eager" and parity[name]["scaled"] < 1e-4, (name, parity[name])
    if importlib.util.find_spec("openvino"):  # the bench extra: OpenVINO's rows run and agree
        check_openvino_rows(saved, names, parity)
    if importlib.util.find_spec("ctranslate2"):  # the tiny preset has no adapter: CTranslate2's converter fails
        reasons = dict(saved["skipped"])
        assert "ct2-transformers-converter failed" in reasons["CTranslate2 float32"]


def check_openvino_rows(saved: dict, names: set, parity: dict) -> None:
    """fp32 rows run at fp32 (the hint is explicit) and agree to fp32's bound; where the CPU has bf16
    units a default-hint row runs bf16 and is judged by bf16's tolerance: each by what it ran."""
    from benchmarks.peers import openvino_default_precision
    from exporter.parity.compare import tolerance

    graphs = ("OpenVINO on plain export", "OpenVINO on ours fp32 (tensorrt graph)")
    for name in graphs:
        row = f"{name} [f32]"
        assert row in names and saved["backends"][row]["inference_precision"] == "fp32", sorted(names)
        assert parity[row]["scaled"] < 1e-4, (row, parity[row])
    default = openvino_default_precision()
    for name in graphs:
        row = f"{name}, default hint [{default}]"
        assert (row in names) is (default != "f32"), sorted(names)
        if default != "f32":
            ran = saved["backends"][row]["inference_precision"]
            assert ran == "bf16" and 0 < parity[row]["scaled"] <= tolerance(ran, "*"), (row, parity[row])


def test_a_backend_that_fails_is_reported_with_its_error_and_the_run_goes_on(tmp_path):
    """CTranslate2 converts the bundled model (relative_key + adapter) but its encoder fails on it."""
    pytest.importorskip("ctranslate2")
    from benchmarks.run import benchmark

    grid = Grid(durations=(1.0,), batches=(1,), threads=1, warmup=0, repeats=1)
    data = benchmark(None, tmp_path / "out", grid, work_dir=tmp_path / "work", only=("transformers", "ctranslate2"))
    reasons = dict(data["skipped"])
    assert "failed at the parity run" in reasons["CTranslate2 float32"]
    assert "MatMul: k dimension" in reasons["CTranslate2 float32"]
    assert {r["backend"] for r in data["results"]} == {"transformers eager"}
    assert "not selected (--only transformers,ctranslate2)" in reasons["ours fp32 (ort)"]
    assert "**CTranslate2 float32**: failed at the parity run" in (tmp_path / "out" / "results.md").read_text()


def test_op_profile_sums_kernel_time_per_op_type(tmp_path):
    from benchmarks.op_profile import markdown, profile
    from exporter.export import export

    artifact = export(None, tmp_path / "digits")
    result = profile(artifact, "fp32", seconds=1.0, threads=1, runs=2)
    ops = {r["op"]: r for r in result["rows"]}
    assert "MatMul" in ops and ops["MatMul"]["matmul"] and ops["MatMul"]["nodes"] > 1
    assert abs(sum(r["share"] for r in result["rows"]) - 1.0) < 1e-9
    assert 0 < result["matmul_ms"] <= result["kernel_ms"] <= result["run_ms"] * 1.05
    text = markdown(result, "test machine")
    assert "| MatMul |" in text and "of which matrix multiply" in text
    # non-matmul time located by node, copies across layers summed; never more than its op type's total
    roles = result["roles"]
    assert roles and all(not ops[r["op"]]["matmul"] for r in roles)
    assert all(r["ms"] <= ops[r["op"]]["ms"] + 1e-9 for r in roles)
    assert [r["ms"] for r in roles] == sorted((r["ms"] for r in roles), reverse=True)
    assert "Largest non-matmul nodes" in text


def test_op_profile_sums_one_node_over_its_layers():
    from benchmarks.op_profile import role_of

    assert role_of("/encoder/layers.7/self_attn/Transpose_2") == "layers.*/self_attn/Transpose_2"
    assert role_of("/encoder/layers.12/self_attn/Transpose_2") == role_of("/encoder/layers.0/self_attn/Transpose_2")
    assert role_of("/feature_projection/Add") == "feature_projection/Add"


def test_ceiling_splits_node_time_by_the_call_that_ran_it():
    from benchmarks.ceiling import split_calls

    def node(op, ts, dur):
        return {"cat": "Node", "name": f"/{op}_{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 100, "dur": 50_000},
              {"cat": "Session", "name": "model_run", "ts": 0, "dur": 60},
              node("MatMul", 10, 20), node("MultiHeadAttention", 40, 10),
              node("MatMul", 200, 30_000), node("DynamicQuantizeMatMul", 31_000, 4_000),
              node("MultiHeadAttention", 36_000, 5_000), node("Add", 42_000, 1_000),
              node("MatMul", 90_000, 7)]  # after both calls: belongs to neither
    first, second = split_calls(events)
    assert first == {"run_ms": 0.06, "matmul_ms": 0.02, "attention_ms": 0.01}
    assert second == {"run_ms": 50.0, "matmul_ms": 34.0, "attention_ms": 5.0}


def test_ceiling_reads_each_call_against_its_own_rounds_roof(tmp_path):
    from benchmarks.ceiling import BARS, markdown, measure
    from exporter.export import export

    artifact = export(None, tmp_path / "digits")
    roofs = iter([40.0, 80.0])
    result = measure(artifact, "fp32", seconds=1.0, threads=1, rounds=2,
                     peaks=lambda threads: {"fp32": next(roofs), "int8": 1.0})
    flops = result["gflop"] * 1e9
    assert [r["roof"] for r in result["rounds"]] == [40.0, 80.0]
    for r in result["rounds"]:
        assert 0 < r["matmul_ms"] < r["run_ms"] and 0 < r["attention_ms"] <= r["other_ms"]
        assert r["model_pct"] == pytest.approx(100 * flops / (r["run_ms"] / 1e3) / (r["roof"] * 1e9))
        assert r["budget_ms"] == pytest.approx(flops / (BARS["fp32"] / 100 * r["roof"] * 1e9) * 1e3 - r["matmul_ms"])
        assert r["ceiling_pct"] > r["model_pct"]  # the matmul nodes outrun the whole call
    assert result["median"]["roof"] == 60.0
    text = markdown(result, "test machine")
    assert "| median | 60 |" in text and "ceiling %" in text


def test_a_study_on_a_missing_variant_exits_with_the_artifacts_message(tmp_path):
    import argparse

    from benchmarks.ceiling import markdown, measure
    from benchmarks.op_profile import write_study
    from exporter.export import export

    artifact = export(None, tmp_path / "digits")
    args = argparse.Namespace(precision="int8", out=tmp_path / "ceiling.md")
    with pytest.raises(SystemExit, match="has no 'int8' variant; it has: fp32"):
        write_study(args, lambda precision: measure(artifact, precision, 1.0, 1, 1), markdown)
    assert not (tmp_path / "ceiling.md").exists()


def test_attention_core_flops_counts_every_layer_and_adapter_layer():
    from benchmarks.flops import adapter_lengths, attention_core_flops

    config = preset_config("w2v-bert-2.0").to_dict()
    assert attention_core_flops(config, 499) == 24 * 4 * 499 * 499 * 1024
    adapted = {**config, "add_adapter": True, "num_adapter_layers": 2, "output_hidden_size": 512}
    lengths = adapter_lengths(499, adapted)
    assert lengths == [250, 125]
    assert attention_core_flops(adapted, 499, batch=2) == 2 * (24 * 4 * 499 * 499 * 1024 +
                                                               sum(4 * t * t * 512 for t in lengths))


def test_relative_bias_forms_compute_the_exported_bias():
    """Every form timed by benchmarks.relative_bias is checked against numpy before it is timed."""
    from benchmarks.relative_bias import forms, measure

    rows = measure(frames=23, heads=3, left=5, right=2, threads=1, calls=2)
    assert [r["form"] for r in rows][0] == "Gather rows + Transpose (exported)" and len(rows) == 4
    assert all(r["best_ms"] <= r["median_ms"] for r in rows)
    values = np.zeros((3, 23, 8), np.float32)
    _, feeds = forms(values, np.zeros(23 * 23, np.int64))["GatherElements, int32 index"]
    assert feeds["index"].dtype == np.int32 and feeds["index"].shape == (3, 23 * 23)


def test_gate_overrides_reach_the_standard_graph_export_unchanged():
    from benchmarks.run import gate_args
    from exporter.quantize.gates import parse_overrides

    given = ["min_cosine=0", "int8-qdq.max_scaled_error=100", "max_cer=0.125"]
    assert parse_overrides(gate_args(parse_overrides(given))[1::2]) == parse_overrides(given)


def test_a_work_dir_serves_only_the_source_it_was_made_from(tmp_path):
    from benchmarks.run import benchmark
    from benchmarks.workdir import STAMP, claim
    from runtime.errors import InputError

    work = tmp_path / "work"
    claim(work, "tiny")
    claim(work, "tiny")  # the same source again: its files are reused
    (work / "artifact").mkdir()
    with pytest.raises(InputError, match=r"holds the exports of preset 'tiny', not of preset 'w2v-bert-2\.0'"):
        claim(work, "w2v-bert-2.0")
    grid = Grid(durations=(1.0,), batches=(1,), threads=1, warmup=0, repeats=1)
    with pytest.raises(InputError, match="not of preset 'w2v-bert-2.0'"):  # refused before anything is built
        benchmark("w2v-bert-2.0", tmp_path / "out", grid, work_dir=work)
    assert sorted(p.name for p in work.iterdir()) == ["artifact", STAMP]  # nothing removed, nothing added
    assert not (tmp_path / "out").exists()

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(preset_config("tiny").to_dict()))
    claim(tmp_path / "w2", str(checkpoint))
    (checkpoint / "config.json").write_text(json.dumps({**preset_config("tiny").to_dict(), "num_hidden_layers": 3}))
    with pytest.raises(InputError, match="as it was before its files changed"):
        claim(tmp_path / "w2", str(checkpoint))

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not empty and has no source.json"):
        claim(busy, "tiny")
    (busy / STAMP).write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        claim(busy, "tiny")
    assert (busy / "notes.txt").read_text() == "mine"


def test_ctranslate2_twin_keeps_a_ctc_head_and_wraps_any_other(tmp_path):
    """The converter reads a CTC checkpoint; a CTC source keeps its head (logits compared with the
    others'), an encoder-only source gets a 32-token head and return_hidden (hidden states compared)."""
    import shutil

    pytest.importorskip("transformers")
    from benchmarks.backends import materialize
    from benchmarks.peers import character_vocabulary, ctc_twin

    encoder = tmp_path / "tiny"
    materialize("tiny", encoder)
    ctc = tmp_path / "tiny-ctc"  # the same encoder under a 40-token CTC head, no vocab.json
    ctc.mkdir()
    shutil.copy(encoder / "model.safetensors", ctc / "model.safetensors")
    config = json.loads((encoder / "config.json").read_text())
    (ctc / "config.json").write_text(json.dumps({**config, "architectures": ["Wav2Vec2BertForCTC"], "vocab_size": 40}))
    for source, is_ctc in ((encoder, False), (ctc, True)):
        twin = tmp_path / f"{source.name}-twin"
        ctc_twin(str(source), str(twin))
        written = json.loads((twin / "config.json").read_text())
        vocab = json.loads((twin / "vocab.json").read_text())
        assert written["return_hidden"] is (not is_ctc)
        assert written["vocab_size"] == len(vocab) == (40 if is_ctc else 32)
    assert sorted(character_vocabulary(40).values()) == list(range(40))
    assert list(character_vocabulary(4)) == ["<pad>", "<s>", "</s>", "<unk>"]


def test_table_off_a_terminal_is_the_whole_markdown_table():
    """`w2vbert benchmark | tee log`: rich would cut the columns to the pipe's 80 characters."""
    import io

    from benchmarks.report import print_table

    name = "OpenVINO on ours fp32 (tensorrt graph), default hint [bf16]"
    result = {"backend": name, "duration": 10.0, "batch": 1, "frames": 499, "flops": 1,
              "latency": {"median": 0.5, "min": 0.4, "p90": 0.6, "runs": 5}, "real_time_factor": 0.05,
              "audio_seconds_per_second": 20.0, "gflops": 1.0, "percent_of_peak": 50.0}
    data = {"results": [result], "backends": {name: {"load_seconds": 1.0, "peak_rss_bytes": 2e8, "file_bytes": 3e6,
                                                    "parity": {"against": "transformers eager", "max_abs": 0.09,
                                                               "scaled": 0.004}}},
            "grid": {"threads": 2}, "model": {"label": "CTC"}, "skipped": [("ORT CUDA", "no GPU")]}
    out = io.StringIO()
    print_table(data, out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("| backend | audio x batch | median ms")
    assert lines[2] == (f"| {name} | 10 s x1 | 500.0 | 400.0 | 600.0 | 0.0500 | 20.0 | 10.00 | - | 9.00e-02 / 4.0e-03 "
                        "| 1.0 | 50% | 1.0 | 200 | 3.0 |")
    assert lines[-1] == "skipped ORT CUDA: no GPU"


def test_mutation_report_scores_each_module_and_names_unexplained_survivors():
    from benchmarks.mutation import markdown, module_of, read_results, score

    text = ("    runtime.decode.x_greedy_ids__mutmut_1: killed\n    runtime.decode.x_softmax__mutmut_2: survived\n"
            "    runtime.decode.x_softmax__mutmut_3: timeout\n    runtime.decode.x_top_labels__mutmut_4: survived\n"
            "    runtime.session.xǁSessionǁrun__mutmut_1: killed\n")
    statuses = read_results(text)
    assert len(statuses) == 5 and statuses["runtime.decode.x_softmax__mutmut_3"] == "timeout"
    assert module_of("runtime.session.xǁSessionǁrun__mutmut_1") == "runtime.session"
    assert module_of("exporter.parity.compare.x_diff__mutmut_9") == "exporter.parity.compare"
    rows = score(statuses, {"runtime.decode.x_softmax__mutmut_2": "equivalent: the shift cancels"})
    decode, session = rows
    assert (decode["mutants"], decode["killed"], decode["survived"], decode["explained"]) == (4, 2, 2, 1)
    assert decode["score"] == 50.0 and round(decode["score_without_equivalents"], 1) == 66.7
    assert decode["unexplained"] == ["runtime.decode.x_top_labels__mutmut_4"]
    assert session["score"] == 100.0 and session["unexplained"] == []
    report = markdown(rows, "CPU", "mutmut 3.8.1")
    assert "| `runtime.decode` | 4 | 2 | 2 | 1 | 50.0% | 66.7% |" in report
    assert "- `runtime.decode.x_top_labels__mutmut_4`" in report
    pending = markdown(rows, "CPU", "mutmut 3.8.1", missing=["runtime/inputs.py"])
    assert "| `runtime.inputs` | not run yet |" in pending
