"""The first run of the TensorRT path, for the first machine with an NVIDIA GPU and TensorRT.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu] [--skip-tests]

Never run: it was written without a GPU (the CPU machines of this project have none). Without a
GPU, TensorRT, polygraphy or onnxruntime-gpu it exits 1 with one line saying what is missing.
On a GPU machine, in under 5 minutes on the `tiny` preset, it records in OUT/report.json:

1. versions and API presence (strong typing, the weak-typing flags TensorRT 11 removed);
2. the `gpu` / `tensorrt` tests (pytest -m "gpu or tensorrt");
3. an fp32, fp16 and int8 plan of `tiny` (export --target tensorrt --engine), with each plan's
   input dtypes and profile, and each layer's precision from TensorRT's engine inspector;
4. outputs at the profile's minimum, optimum and maximum frames, batch 1 and the maximum batch,
   against the CPU fp32 variant;
5. which provider onnxruntime really used for `cuda` and `tensorrt` Sessions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def missing() -> str | None:
    """What this machine lacks for the check, in one line; None when it has everything."""
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        return "no NVIDIA GPU (nvidia-smi is missing or lists none)"
    absent = [m for m in ("tensorrt", "polygraphy", "onnxruntime") if importlib.util.find_spec(m) is None]
    if absent:
        return f"missing Python packages: {', '.join(absent)} (pip install '.[gpu,export]')"
    import onnxruntime as ort

    lacking = [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
               if p not in ort.get_available_providers()]
    if lacking:
        return f"onnxruntime offers no {', '.join(lacking)} (install onnxruntime-gpu instead of onnxruntime)"
    return None


def versions() -> dict:
    import onnxruntime as ort
    import polygraphy
    import tensorrt as trt

    flags = trt.BuilderFlag
    return {"tensorrt": trt.__version__, "polygraphy": polygraphy.__version__, "onnxruntime": ort.__version__,
            "strongly_typed": hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"),
            "BuilderFlag.FP16": hasattr(flags, "FP16"), "BuilderFlag.INT8": hasattr(flags, "INT8"),
            "BuilderFlag.OBEY_PRECISION_CONSTRAINTS": hasattr(flags, "OBEY_PRECISION_CONSTRAINTS"),
            "BuilderFlag.TF32": hasattr(flags, "TF32"),
            "gpu": subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()}


def inspect_plan(plan: Path) -> tuple[dict[str, str], dict[str, int]]:
    """(input dtypes, counts of each layer output format/precision) of a plan, from TensorRT's engine inspector."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    counts: dict[str, int] = {}
    for layer in info.get("Layers", []):
        for tensor in layer.get("Outputs", []) if isinstance(layer, dict) else []:
            fmt = tensor.get("Format/Datatype", "?")
            counts[fmt] = counts.get(fmt, 0) + 1
    dtypes = {name: str(engine.get_tensor_dtype(name)) for name in ("input_features", "attention_mask")}
    return dtypes, counts


def compare_plans(artifact: Path) -> list[dict]:
    """Every plan at the profile's corners against the CPU fp32 variant."""
    import numpy as np

    from runtime import Session
    from runtime.manifest import load_manifest

    manifest = load_manifest(artifact)
    cpu = Session(artifact, precision="fp32")
    rows = []
    for precision, entry in manifest.data.get("engines", {}).items():
        engine = Session(artifact, precision=precision, provider="trt-engine")
        profile = entry["profile"]
        dtypes, layers = inspect_plan(artifact / entry["file"])
        for batch in sorted({1, profile["max_batch"]}):
            for frames in (profile["min_frames"], profile["opt_frames"], profile["max_frames"]):
                x = np.random.default_rng(0).standard_normal((batch, frames, 160)).astype(np.float32)
                mask = np.ones((batch, frames), np.int64)
                ref, got = cpu.run(x, mask), engine.run(x, mask)
                err = max(float(np.abs(ref[k] - got[k]).max()) for k in ref)
                rows.append({"plan": precision, "batch": batch, "frames": frames, "max_abs": err,
                             "input_dtypes": dtypes, "profile": profile, "layers": layers})
        engine.close()
    return rows


def providers_used(artifact: Path) -> dict[str, str]:
    from runtime import Session

    used = {}
    for provider in ("cuda", "tensorrt"):
        try:
            session = Session(artifact, precision="fp32", provider=provider)
            used[provider] = session._session.get_providers()[0]
        except Exception as exc:  # recorded, not raised: the report says what failed
            used[provider] = f"failed: {type(exc).__name__}: {exc}"
    return used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    lack = missing()
    if lack:
        print(f"gpu_check: cannot run here: {lack}")
        return 1
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"versions": versions()}
    if not args.skip_tests:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu or tensorrt", "tests"],
                              capture_output=True, text=True, cwd=ROOT)
        report["tests"] = {"returncode": done.returncode, "tail": done.stdout.strip().splitlines()[-15:]}
    artifact = args.out / "tiny-tensorrt"
    built = subprocess.run([sys.executable, "-m", "exporter.cli", "export", "tiny", "-o", str(artifact), "--force",
                            "--target", "tensorrt", "--precision", "fp32,fp16,int8-qdq", "--engine",
                            "--gate", "max_scaled_error=1", "--gate", "min_cosine=0.5"],
                           capture_output=True, text=True, cwd=ROOT)
    report["export"] = {"returncode": built.returncode, "tail": built.stderr.strip().splitlines()[-10:]}
    if built.returncode == 0:
        report["plans"] = compare_plans(artifact)
        report["providers"] = providers_used(artifact)
    report["seconds"] = round(time.time() - started, 1)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if built.returncode == 0 and report.get("tests", {}).get("returncode", 0) == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
