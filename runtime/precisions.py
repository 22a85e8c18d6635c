"""The precisions an artifact's variants come in: one frozen row each, the one home of the concept.

Every stage reads its row: the export's choices and guards (targets), the converter that builds it
(exporter.quantize.convert, by ``converter``), its accuracy gate defaults and parity tolerance
(exporter.quantize.gates, exporter.parity.compare), whether its one form is the CPU form, the
TensorRT plan built from it and that plan's build flags, onnxruntime's TensorRT provider flags,
Triton's precision mode, and whether and how OpenVINO runs it. Plain Python: the runtime (providers,
TensorRT profiles, OpenVINO) reads it too.

Adding a precision is one row here plus its converter function in exporter/quantize/convert.py.
The numbers beside each row are measured (benchmarks/results/int8-formats.md, accuracy.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


def _frozen(**values) -> Mapping:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class Precision:
    name: str
    what: str  # one line, for help texts and docs
    targets: tuple[str, ...]  # export targets it can be built for
    runs_on: str  # the engines that run it
    converter: str | None = None  # exporter.quantize.convert.CONVERTERS key; None: the traced fp32 graph itself
    # parity against the fp32 variant, as a fraction of the output's largest magnitude (None for fp32,
    # which is compared with the PyTorch reference instead, at exporter.parity.compare's "fp32" tolerance)
    tolerance: float | None = None
    gate: Mapping = field(default_factory=_frozen)  # accuracy-gate defaults; empty: not gated (fp32)
    cpu_form: bool = False  # its one file is already the CPU form (SkipLayerNormalization unfused)
    plan: str | None = None  # the TensorRT plan built from this variant (manifest "engines" key)
    plan_tolerance: float | None = None  # that plan against the PyTorch reference
    plan_fp16: bool = False  # weakly typed TensorRT builds: the precision flags the plan needs
    plan_int8: bool = False
    ort_trt: Mapping = field(default_factory=_frozen)  # onnxruntime TensorRT provider flags
    openvino: bool = False  # Session(provider="openvino") runs it
    onnxruntime: bool = True  # onnxruntime's providers run it (bf16: no x86 CPU kernels)
    shares_fp32: bool = False  # no file of its own: fp32's graph run at another inference precision
    # OpenVINO's INFERENCE_PRECISION_HINT for it; None: OpenVINO's own choice (bf16 where the CPU has it)
    openvino_hint: str | None = None

    @property
    def scaled(self) -> bool:
        """Whether its tolerance is relative to the output's largest magnitude (all reduced precisions)."""
        return self.tolerance is not None

    @property
    def triton_mode(self) -> str | None:
        """precision_mode of ONNX Runtime's TensorRT accelerator on Triton GPU instances."""
        return self.plan.upper() if self.plan else None


_NO_TRT = _frozen(trt_fp16_enable=False, trt_int8_enable=False)

PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "the traced graph", ("ort", "tensorrt"), "ORT CPU / CUDA, TensorRT, OpenVINO",
              plan="fp32", plan_tolerance=1e-3, ort_trt=_NO_TRT, openvino=True, openvino_hint="f32"),
    # fp16 3.7e-4 scaled error on the bundled model; LayerNorm, softmax and reductions stay fp32
    Precision("fp16", "fp16 weights and activations, fp32 interface", ("ort", "tensorrt"),
              "ORT CPU / CUDA, TensorRT", converter="fp16", tolerance=5e-3,
              gate=_frozen(min_cosine=0.999, min_agreement=0.99, max_cer=0.1), plan="fp16", plan_tolerance=1e-2,
              plan_fp16=True, ort_trt=_frozen(trt_fp16_enable=True, trt_int8_enable=False)),
    # scaled error 0.014 (AVX2, saturating kernel) / 0.013 (exact sums) with 7-bit weights
    Precision("int8", "dynamic: int8 weights per output channel (7-bit range), uint8 activations per call",
              ("ort",), "ORT CPU", converter="int8_dynamic", tolerance=0.1,
              gate=_frozen(min_cosine=0.98, min_agreement=0.95, max_cer=0.5), cpu_form=True, ort_trt=_NO_TRT),
    # 0.026 / 0.024; the int8 TensorRT plan is built from its Q/DQ nodes (explicit quantization)
    Precision("int8-qdq", "static Q/DQ, symmetric int8, calibrated", ("ort", "tensorrt"),
              "ORT CPU / CUDA, TensorRT, OpenVINO", converter="int8_qdq", tolerance=0.1,
              gate=_frozen(min_cosine=0.98, min_agreement=0.95, max_cer=0.5), cpu_form=True, plan="int8",
              plan_tolerance=0.1, plan_fp16=True, plan_int8=True,
              ort_trt=_frozen(trt_fp16_enable=True, trt_int8_enable=True), openvino=True),
    # fp32's file, compiled by OpenVINO with bf16 inference precision (AVX512_BF16 / AMX CPUs):
    # 4.0e-3 scaled error on the bundled model (AMD Zen 4), bfloat16 keeping 8 significant bits
    Precision("bf16", "fp32's graph run in bf16 by OpenVINO (CPUs with AVX512_BF16 or AMX)", ("ort", "tensorrt"),
              "OpenVINO", tolerance=0.05, gate=_frozen(min_cosine=0.999, min_agreement=0.99, max_cer=0.1),
              openvino=True, openvino_hint="bf16", onnxruntime=False, shares_fp32=True),
    # 0.069 on both
    Precision("int4", "weight-only MatMulNBits, blocks of 32, symmetric", ("ort",), "ORT CPU", converter="int4",
              tolerance=0.25, gate=_frozen(min_cosine=0.95, min_agreement=0.90, max_cer=1.0), cpu_form=True,
              ort_trt=_NO_TRT),
)}


def precision(name: str) -> Precision:
    """The row of `name`; KeyError naming the known ones."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise KeyError(f"precision {name!r} is unknown; expected one of {', '.join(PRECISIONS)}") from None


def variant_row(variant: str) -> Precision | None:
    """The row of a manifest variant: its precision's, fp32's for the raw-audio variant ("fp32-frontend");
    None for a name no row has."""
    return PRECISIONS.get(variant.removesuffix("-frontend"))


def engines_of(variant: str) -> tuple[str, ...]:
    """The engines a Session runs a variant on: "onnxruntime", "openvino" or both (a name no row has:
    onnxruntime, which runs any ONNX the export wrote)."""
    row = variant_row(variant)
    if row is None:
        return ("onnxruntime",)
    return tuple(name for name, runs in (("onnxruntime", row.onnxruntime), ("openvino", row.openvino)) if runs)


def gated() -> dict[str, Precision]:
    """The precisions with an accuracy gate (every reduced one)."""
    return {name: p for name, p in PRECISIONS.items() if p.gate}


def plan_precision(variant: str) -> Precision | None:
    """The row whose variant a TensorRT plan named `variant` ("fp32", "fp16", "int8") is built from."""
    return next((p for p in PRECISIONS.values() if p.plan == variant), None)
