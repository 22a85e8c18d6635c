"""The accuracy study's bookkeeping: which engines run each variant, and the CER-change table."""

from __future__ import annotations

import importlib.util

from benchmarks.accuracy import CER_BOUNDS, exportable, precision_table, providers_of

OPENVINO = importlib.util.find_spec("openvino") is not None


def test_each_variant_runs_on_the_engines_its_row_names():
    assert providers_of("int8") == ["cpu"] and providers_of("fp32-frontend") == ["cpu"]
    assert providers_of("int8-qdq") == (["cpu", "openvino"] if OPENVINO else ["cpu"])
    assert providers_of("bf16") == (["openvino"] if OPENVINO else [])
    assert "int8" in exportable() and ("bf16" in exportable()) <= OPENVINO


def test_cer_change_per_engine_against_fp32_on_onnxruntime():
    rows = [("PyTorch reference (exporter.load_model)", [(1.0, 2.0), (3.0, 4.0)]),
            ("onnxruntime fp32 (runtime.Session)", [(1.0, 2.0), (3.0, 4.0)]),
            ("OpenVINO fp32 (runtime.Session)", [(1.0, 2.0), (3.0, 4.0)]),
            ("onnxruntime int8 (runtime.Session)", [(1.25, 2.0), (2.5, 4.0)]),
            ("OpenVINO bf16 (runtime.Session)", [(1.0, 2.0), (3.5, 4.0)])]
    table = precision_table(rows, ["seen", "unseen"]).splitlines()
    assert table[0] == "| variant | CER change, seen | CER change, unseen | bound | within |"
    assert table[2:] == ["| fp32 on OpenVINO | +0.00 | +0.00 | - | - |",
                         f"| int8 | +0.25 | -0.50 | {CER_BOUNDS['int8']:.1f} | yes |",
                         f"| bf16 on OpenVINO | +0.00 | +0.50 | {CER_BOUNDS['bf16']:.1f} | NO |"]
