"""Lint an ONNX graph against the TensorRT ONNX parser's supported-operator list.

The list is data (exporter/data/tensorrt_onnx_ops.json, with the TensorRT version
it was taken from), so updating it is a data change. Run by `w2vbert export
--target tensorrt` and by the tests; every offending node is reported at once.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from runtime.errors import ExportError

OPS_FILE = Path(__file__).resolve().parents[1] / "data" / "tensorrt_onnx_ops.json"


@lru_cache(maxsize=1)
def supported_ops() -> dict:
    return json.loads(OPS_FILE.read_text())


def lint(model_path: Path) -> list[str]:
    """Problems that would stop TensorRT's ONNX parser; empty when the graph is fine."""
    import onnx

    table = supported_ops()
    model = onnx.load(str(model_path), load_external_data=False)
    problems = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not table["opset_min"] <= opset.version <= table["opset_max"]:
            problems.append(f"opset {opset.version} outside TensorRT {table['tensorrt_version']}'s "
                            f"{table['opset_min']}..{table['opset_max']}")
    allowed = set(table["supported"])
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"node {node.name or node.op_type}: {node.domain}::{node.op_type} is not a standard "
                            "ONNX op (TensorRT would need a plugin)")
        elif node.op_type not in allowed:
            problems.append(f"node {node.name or node.op_type}: {node.op_type} is not supported by TensorRT "
                            f"{table['tensorrt_version']}'s ONNX parser")
        elif node.op_type == "LayerNormalization" and len([o for o in node.output if o]) > 1:
            problems.append(f"node {node.name}: LayerNormalization with Mean/InvStdDev outputs (TensorRT: Y only)")
    return problems


def check(model_path: Path) -> None:
    problems = lint(model_path)
    if problems:
        shown = "\n  ".join(problems[:30])
        raise ExportError(f"{model_path.name} would not parse in TensorRT ({len(problems)} problems):\n  {shown}")
