"""The CPU record: which int8 kernel onnxruntime picks for a set of flags, and where it is written."""

from __future__ import annotations

import json

import pytest

from exporter.machine import describe, int8_kernel, machine

AVX512_CORE = ["avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"]


@pytest.mark.parametrize("flags, kernel, saturates", [
    (["sse4_1", "sse4_2"], "SSE", False),
    (["avx", "avx2", "fma"], "AVX2", True),  # AMD Zen 2 / 3, Intel Haswell..Comet Lake
    (["avx2", "fma", "avx_vnni"], "AVX-VNNI", False),  # Alder Lake
    (AVX512_CORE, "AVX-512", True),  # Skylake-SP
    (AVX512_CORE + ["avx512_vnni"], "AVX-512 VNNI", False),  # Cascade Lake.., AMD Zen 4
    (AVX512_CORE + ["avx512vnni"], "AVX-512 VNNI", False),  # CPUID spelling
    (AVX512_CORE + ["avx512_vnni", "amx_tile", "amx_int8"], "AMX", False),  # Sapphire Rapids
    (["avx2", "fma", "avx512f"], "AVX2", True),  # AVX-512 foundation alone: MLAS keeps the AVX2 kernel
])
def test_int8_kernel_follows_onnxruntime_dispatch(flags, kernel, saturates):
    assert int8_kernel(flags) == (kernel, saturates)


def test_this_machine_is_described():
    info = machine()
    assert info["cpu"] and info["cores"] >= 1 and info["int8_kernel"] in {"SSE", "AVX2", "AVX-VNNI", "AVX-512",
                                                                          "AVX-512 VNNI", "AMX"}
    assert info["int8_saturates"] == int8_kernel(info["isa"])[1]
    assert info["int8_kernel"] in describe(info) and info["cpu"] in describe(info)


def test_bf16_units_are_named():
    base = {"cpu": "X", "cores": 2, "int8_kernel": "AVX-512 VNNI", "int8_saturates": False}
    assert describe({**base, "isa": AVX512_CORE + ["avx512_vnni"]}) == \
        "X, 2 cores, AVX-512 (int8 kernel AVX-512 VNNI, exact int32 sums)"
    assert describe({**base, "isa": AVX512_CORE + ["avx512_bf16"]}) == \
        "X, 2 cores, AVX-512, bf16 units (AVX512_BF16) (int8 kernel AVX-512 VNNI, exact int32 sums)"
    assert "bf16 units (AMX + AVX512_BF16)" in describe({**base, "isa": AVX512_CORE + ["avx512_bf16", "amx_bf16"]})


def test_manifest_names_the_exporting_machine(tmp_path):
    from exporter.export import export

    out = export("tiny", tmp_path / "a")
    assert json.loads((out / "manifest.json").read_text())["machine"] == machine()
