"""``provider="auto"``: the engine measured fastest for a precision on this kind of CPU.

The kinds are told apart by the instruction sets the engines' kernels use: AMX (Intel Sapphire
Rapids and later: OpenVINO's bf16 and int8 matmuls run on its tiles), AVX512_BF16 without AMX
(AMD Zen 4 / 5), and the rest (AVX-512 VNNI, AVX2). Each rule is a measurement, recorded in
benchmarks/results/engines.md with its CPU and command; a precision and CPU kind without one
stays on onnxruntime, whose figures every other result in this project is measured against.

``auto`` is not the default provider: a Session's numbers would then depend on which optional
package is installed and on the CPU (int8-qdq differs between the two engines by up to its
tolerance), while "cpu" gives the same figures the export's gates measured.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .precisions import PRECISIONS

# CPU kind -> {precision: provider}, from benchmarks/results/engines.md
FASTEST: dict[str, dict[str, str]] = {
    # Intel Xeon, AMX + AVX512_BF16 (issue 34's figures, 600M CTC, 10 s, batch 1, 2 threads): OpenVINO on
    # int8-qdq 7.63x transformers against onnxruntime int8's 4.59x; fp32 1.40x against 1.35x (a tie)
    "amx": {"int8-qdq": "openvino"},
    # AMD EPYC Zen 4, AVX512_BF16 without AMX (engines.md): int8-qdq on OpenVINO 4.66x against onnxruntime
    # int8's 4.19x in the same run; fp32 a tie (1.55x / 1.52x)
    "avx512_bf16": {"int8-qdq": "openvino"},
    # AMD EPYC Zen 3, AVX2 (peers-w2v-bert-2.0): OpenVINO int8-qdq 1.30x against onnxruntime int8's 2.23x
    "other": {},
}


def cpuinfo_field(name: str) -> str:
    """The first CPU's `name` line of Linux /proc/cpuinfo ("model name", "flags"); "" elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    line = next((line for line in text.splitlines() if line.startswith(name)), "")
    return line.partition(":")[2].strip()


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags (Linux /proc/cpuinfo; empty elsewhere)."""
    return set(cpuinfo_field("flags").split())


def cpu_kind(flags: set[str]) -> str:
    if {"amx_tile", "amx_bf16"} <= flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return "other"


def auto_provider(precision: str, flags: set[str] | None = None, openvino: bool | None = None) -> str:
    """The provider ``auto`` resolves to for `precision` here: OpenVINO where it measured fastest on
    this CPU kind (and for what only it runs, bf16), else onnxruntime's CPU provider."""
    row = PRECISIONS.get(precision)
    if row is not None and not row.onnxruntime:
        return "openvino"
    if openvino is None:
        openvino = importlib.util.find_spec("openvino") is not None
    if row is None or not row.openvino or not openvino:
        return "cpu"
    return FASTEST[cpu_kind(cpu_flags() if flags is None else flags)].get(precision, "cpu")
