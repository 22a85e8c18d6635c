"""fp32 ONNX -> fp16, int8 dynamic, int8 QDQ (calibrated), int4 weight-only.

Every conversion reads the checked fp32 variant and writes a new file; accuracy is
judged afterwards by :mod:`exporter.quantize.gates`, never assumed. Only MatMuls whose second
input is a weight initializer are quantized: on the `tensorrt` target the attention
score products (activation x activation) stay in float, and on the `ort` target they
live inside MultiHeadAttention anyway.

Choices and why:
* int8 weights use 7 of their 8 bits (onnxruntime's ``reduce_range``), in both int8 forms.
  On AVX2 and on AVX-512 without VNNI, onnxruntime's int8 GEMM multiplies with VPMADDUBSW,
  which adds two u8 x s8 products into a saturating int16: 255 * 127 * 2 overflows it,
  255 * 63 * 2 does not. With full-range weights the same artifact gave 9x the error on an
  AVX2 CPU that it gave where the sums are exact (SSE4.2, VNNI, AMX); with 7-bit weights the
  error is the same on both, and smaller than the full-range error on AVX2
  (benchmarks/results/int8-formats.md). The kernels are the same, so speed is too.
* int8 dynamic uses signed int8 weights with per-output-channel scales (U8S8: ORT's
  DynamicQuantizeLinear makes activations uint8). U8U8 avoids the saturation too, but
  measured 1.9x slower on AVX-512 VNNI (int8-formats.md).
* int8 QDQ follows TensorRT's explicit-quantization rules: symmetric int8 activations and
  weights, zero point 0, per-channel weight scales on the output-channel axis (1 for a
  MatMul weight [in, out]). 7-bit weights are still symmetric int8 to TensorRT. The same
  file runs in ORT (S8S8; on AVX2 the activations go through the same u8 x s8 kernel).
* fp16 keeps the model interface fp32 and keeps LayerNorm, softmax and reductions in
  fp32 -- the known fp16 overflow points of Conformers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime.errors import DependencyError, ExportError, OptionError
from runtime.precisions import PRECISIONS

from ..passes.unfuse_skip_layernorm import unfuse_skip_layernorm
from ..plan import CALIBRATORS
from ..trace.onnx_io import consolidate, save

log = logging.getLogger("w2vbert")
# Kept in fp32 by the fp16 conversion: their sums of squares / exponentials overflow fp16.
FP16_KEEP_FP32 = ["LayerNormalization", "SkipLayerNormalization", "Softmax", "ReduceMean", "ReduceSum",
                  "ReduceMax", "Pow", "Sqrt", "Exp", "CumSum"]
INT4_BLOCK = 32  # MatMulNBits block along the input dimension


@dataclass(frozen=True)
class Int8Format:
    """How int8 operands are stored. The default is what every export uses (see the module doc);
    the others exist so benchmarks.int8_formats can measure the alternatives side by side."""

    weights: str = "int8"  # "int8" (U8S8 / S8S8 kernels) or "uint8" (dynamic only: U8U8)
    reduce_range: bool = True  # 7-bit weights: no int16 saturation in AVX2 / AVX-512 kernels

    def record(self, precision: str) -> dict:
        activations = "uint8, dynamic per tensor" if precision == "int8" else "int8, calibrated, symmetric"
        bits = "7-bit range (reduce_range)" if self.reduce_range else "full 8-bit range"
        return {"activations": activations, "weights": f"{self.weights} per output channel, {bits}"}


INT8_FORMAT = Int8Format()


def weight_matmuls(model) -> list[str]:
    """Names of the MatMul nodes whose second input is an initializer (a weight)."""
    weights = {t.name for t in model.graph.initializer}
    names = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    if any(not n for n in names):
        raise ExportError("a weight MatMul has no node name; quantization exclusions need names")
    return names


def _to_quantize(src: Path, exclude) -> list[str]:
    """The weight MatMuls of `src` minus those `exclude` keeps in fp32."""
    import onnx

    kept = set(exclude)
    return [n for n in weight_matmuls(onnx.load(str(src), load_external_data=False)) if n not in kept]


def quantize(src: Path, dst: Path, precision: str, *, exclude=(), calibration=None,
             calibrator: str = "percentile", int8_format: Int8Format = INT8_FORMAT) -> None:
    """Write the `precision` version of the fp32 model `src` to `dst` (one file, or + .data when > 2 GB).

    `exclude`: weight MatMul names left in fp32 (mixed precision). `calibration`: a list of
    input feeds (dicts), needed by int8-qdq. `int8_format`: the int8 operand types (benchmarks
    compare them; exports keep the default).
    """
    import onnx

    _need_onnxruntime_quantization()
    work = dst.parent / f".{dst.name}.work"  # inside the staging dir: nothing left elsewhere
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        tmp = work / "model.onnx"
        with _library_warnings():
            converter_of(precision).build(src, tmp, Job(exclude, calibration, calibrator, int8_format))
        metadata = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
        metadata["w2vbert.precision"] = precision
        # int8 dynamic and int4 only run on ORT's CPU kernels, and int8-qdq runs on ORT's CPU kernels or
        # TensorRT (which parses Add + LayerNormalization, not the com.microsoft op): their one form is
        # the CPU form (the row's cpu_form). fp16 is the CUDA precision and keeps the fused op.
        unfuse = unfuse_skip_layernorm if PRECISIONS[precision].cpu_form else None
        consolidate(tmp, dst, metadata, replace=True, transform=unfuse)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _library_warnings():
    """onnxruntime's quantizers warn on the root logger ("Please consider to run pre-processing before
    quantization", up to 18 times per export: we quantize chosen weight MatMuls only, with shapes
    known), and its int4 quantizer calls logging.basicConfig(level=INFO) when imported, then logs a
    line per MatMul on its own logger. Shown with -v (the w2vbert logger at DEBUG), otherwise kept
    back; the root logger's handlers and level are put back as they were."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    root, library = logging.getLogger(), logging.getLogger("onnxruntime")
    saved = root.level, list(root.handlers), library.level
    root.setLevel(logging.ERROR)
    library.setLevel(logging.ERROR)  # its modules' loggers (matmul_nbits_quantizer ...) inherit this
    try:
        yield
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        library.setLevel(saved[2])


@dataclass(frozen=True)
class Job:
    """What a converter is given besides its input and output files."""

    exclude: tuple = ()  # weight MatMul names left in fp32
    calibration: list | None = None  # input feeds, for converters that calibrate
    calibrator: str = "percentile"
    int8_format: Int8Format = INT8_FORMAT


@dataclass(frozen=True)
class Converter:
    """How one precision is made from the fp32 file: build(src, dst, job); `needs_calibration`: the export
    gathers calibration feeds for it; record(job, options) -> extra fields of its manifest entry."""

    build: Callable[[Path, Path, Job], None]
    needs_calibration: bool = False
    record: Callable[[Job, object], dict] = lambda job, options: {}


def converter_of(precision: str) -> Converter:
    """The converter runtime.precisions names for `precision`."""
    name = PRECISIONS[precision].converter if precision in PRECISIONS else None
    if name is None or name not in CONVERTERS:
        raise ExportError(f"precision {precision!r} is not a quantized precision")
    return CONVERTERS[name]


def _qdq(src: Path, dst: Path, job: Job) -> None:
    if not job.calibration:
        raise ExportError("int8-qdq needs calibration inputs (--calibration PATH)")
    if job.calibrator not in CALIBRATORS:
        raise OptionError(f"calibrator {job.calibrator!r} is unknown; expected one of {', '.join(CALIBRATORS)}")
    int8_qdq(src, dst, job.exclude, job.calibration, job.calibrator, job.int8_format)


def _qdq_record(job: Job, options) -> dict:
    return {"int8_format": job.int8_format.record("int8-qdq"),
            "calibration": {"calibrator": options.calibrator, "windows": len(job.calibration),
                            "data": options.calibration or "bundled samples 0, 2, 4"}}


def _need_onnxruntime_quantization() -> None:
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise DependencyError("quantization needs onnxruntime's quantization tools: "
                              'pip install -e ".[cpu,export]"') from exc


def _fp16(src: Path, dst: Path, exclude) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # keep_io_types: callers keep feeding float32 features and reading float32 outputs.
    fp16 = convert_float_to_float16(model, keep_io_types=True, op_block_list=FP16_KEEP_FP32,
                                    node_block_list=list(exclude))
    save(fp16, dst, dst.name + ".data")


def int8_dynamic(src: Path, dst: Path, exclude=(), int8_format: Int8Format = INT8_FORMAT) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = _to_quantize(src, exclude)
    weights = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[int8_format.weights]
    quantize_dynamic(str(src), str(dst), weight_type=weights, per_channel=True,
                     reduce_range=int8_format.reduce_range,
                     op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes, use_external_data_format=True,
                     extra_options={"MatMulConstBOnly": True})


def int8_qdq(src: Path, dst: Path, exclude, calibration, calibrator: str,
             int8_format: Int8Format = INT8_FORMAT) -> None:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calibration)

        def get_next(self):
            return next(self._it, None)

    method = {"percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy,
              "minmax": CalibrationMethod.MinMax}[calibrator]
    if int8_format.weights != "int8":
        raise ExportError(f"int8-qdq weights must be int8 (TensorRT takes symmetric int8 only), "
                          f"not {int8_format.weights}")
    nodes = _to_quantize(src, exclude)
    log.info("calibrating %d MatMuls on %d windows (%s)", len(nodes), len(calibration), calibrator)
    chatter = io.StringIO()  # the calibrators print progress to stdout; keep it for --debug
    with contextlib.redirect_stdout(chatter):
        _quantize_static(src, dst, Feeds(), nodes, method, int8_format.reduce_range)
    log.debug("%s", chatter.getvalue().strip())


def _quantize_static(src: Path, dst: Path, feeds, nodes, method, reduce_range: bool) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(src), str(dst), feeds, quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                    reduce_range=reduce_range, op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                    calibrate_method=method,
                    use_external_data_format=True,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "MatMulConstBOnly": True, "CalibTensorRangeSymmetric": True,
                                   "CalibMovingAverage": False})


def _int4(src: Path, dst: Path, exclude=()) -> None:
    import onnx

    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:  # onnx_ir is an optional dependency of onnxruntime
        raise DependencyError(f"int4 needs onnxruntime's MatMulNBits quantizer ({exc}); "
                              'pip install -e ".[cpu,export]"') from exc
    model = onnx.load(str(src))
    quantizer = MatMulNBitsQuantizer(model, block_size=INT4_BLOCK, is_symmetric=True,
                                     nodes_to_exclude=list(exclude))
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), True)


# converter name (runtime.precisions' `converter`) -> how it is built
CONVERTERS: dict[str, Converter] = {
    "fp16": Converter(lambda src, dst, job: _fp16(src, dst, job.exclude)),
    "int8_dynamic": Converter(lambda src, dst, job: int8_dynamic(src, dst, job.exclude, job.int8_format),
                              record=lambda job, options: {"int8_format": job.int8_format.record("int8")}),
    "int8_qdq": Converter(_qdq, needs_calibration=True, record=_qdq_record),
    "int4": Converter(lambda src, dst, job: _int4(src, dst, job.exclude)),
}
