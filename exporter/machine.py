"""The CPU a result was measured on, and which int8 kernels onnxruntime runs there.

Reduced-precision outputs depend on the instruction set: onnxruntime (MLAS) picks its int8
GEMM kernel from CPUID at start-up, and the AVX2 and AVX-512 (non-VNNI) kernels add pairs
of u8 x s8 products into a saturating int16 (VPMADDUBSW) where SSE, AVX-VNNI, AVX-512 VNNI
and AMX sum exactly. So every manifest and benchmark result names the CPU and this kernel.

The flags come from py-cpuinfo (the kernel's /proc/cpuinfo names on Linux); the kernel
order follows MLAS's platform set-up (onnxruntime/core/mlas/lib/platform.cpp, 1.32).
"""

from __future__ import annotations

import functools
import os

from runtime.errors import DependencyError

# The flags worth recording: the vector and int8 instruction sets.
ISA_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512dq",
             "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
AVX512_CORE = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}
# (label, flags needed, whether u8 x s8 pair sums saturate at int16), best first as MLAS picks.
INT8_KERNELS = (
    ("AMX", {"amx_tile", "amx_int8"}, False),
    ("AVX-512 VNNI", AVX512_CORE | {"avx512_vnni"}, False),
    ("AVX-512", AVX512_CORE, True),
    ("AVX-VNNI", {"avx2", "avx_vnni"}, False),
    ("AVX2", {"avx2", "fma"}, True),
    ("SSE", set(), False),
)


def int8_kernel(flags) -> tuple[str, bool]:
    """(kernel label, saturates) for a set of CPU flags (either spelling: avx512_vnni / avx512vnni)."""
    have = {_plain(f) for f in flags}
    for label, needed, saturates in INT8_KERNELS:
        if {_plain(n) for n in needed} <= have:
            return label, saturates
    raise AssertionError("unreachable: the last kernel needs no flags")


@functools.lru_cache(maxsize=1)
def machine() -> dict:
    """{"cpu", "vendor", "arch", "family", "model", "cores", "isa" (recorded flags), "int8_kernel",
    "int8_saturates"}; the same dict for the whole process (py-cpuinfo takes ~1 s)."""
    try:
        import cpuinfo
    except ImportError as exc:
        raise DependencyError('reading the CPU model and instruction sets needs py-cpuinfo: '
                              'pip install -e ".[export]" (or ".[bench]")') from exc
    info = cpuinfo.get_cpu_info()
    flags = {_plain(f) for f in info.get("flags", ())}
    kernel, saturates = int8_kernel(flags)
    return {"cpu": info.get("brand_raw") or info.get("arch_string_raw", "unknown CPU"),
            "vendor": info.get("vendor_id_raw", ""), "arch": info.get("arch_string_raw", ""),
            # virtual machines often name only the vendor's line ("AMD EPYC"): family/model tell the generation
            "family": info.get("family"), "model": info.get("model"),
            "cores": os.cpu_count(), "isa": [f for f in ISA_FLAGS if _plain(f) in flags],
            "int8_kernel": kernel, "int8_saturates": saturates}


def _plain(flag: str) -> str:
    return flag.lower().replace("_", "")


def describe(info: dict | None = None) -> str:
    """One line: 'AMD EPYC (family 25 model 1), 2 cores, AVX2 (int8 kernel AVX2, saturating int16 pair sums)'."""
    info = info or machine()
    vector = next((f.upper().replace("_", " ") for f in ("avx512f", "avx2", "avx", "sse4_2")
                   if f in info["isa"]), "SSE2")
    vector = "AVX-512" if vector == "AVX512F" else vector
    kind = "saturating int16 pair sums" if info["int8_saturates"] else "exact int32 sums"
    name = info["cpu"] + (f" (family {info['family']} model {info['model']})" if info.get("family") else "")
    bf16 = [label for flag, label in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16")) if flag in info["isa"]]
    # bf16 units decide what OpenVINO runs an fp32 graph in by default (bf16 there)
    units = f", bf16 units ({' + '.join(bf16)})" if bf16 else ""
    return f"{name}, {info['cores']} cores, {vector}{units} (int8 kernel {info['int8_kernel']}, {kind})"
