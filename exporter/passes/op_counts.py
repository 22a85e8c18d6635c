"""Counts of fused ops in an exported graph, and of what onnxruntime fuses when it loads it.

Recorded in the manifest per variant, so a regression in fusion shows up as a
changed count, not only as a slower benchmark.
"""

from __future__ import annotations

import collections
import logging
import tempfile
from pathlib import Path

log = logging.getLogger("w2vbert")

# Ops whose counts tell whether fusion happened.
WATCHED = ("MultiHeadAttention", "Attention", "LayerNormalization", "SkipLayerNormalization",
           "SkipSimplifiedLayerNormalization", "QuickGelu", "FusedMatMul", "MatMul", "Softmax", "Conv",
           "Gather", "Sigmoid")


def op_counts(model_path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def runtime_op_counts(model_path: Path) -> dict[str, int]:
    """Op counts after onnxruntime's extended graph optimisations for the CPU provider."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="w2vbert-opt-") as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "opt.data")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        return op_counts(Path(folder) / "optimized.onnx")


def fused_op_counts(model_path: Path, target: str) -> dict[str, dict[str, int]]:
    graph = op_counts(model_path)
    report = {"graph": {k: v for k, v in sorted(graph.items()) if k in WATCHED}}
    if target == "ort":
        loaded = runtime_op_counts(model_path)
        report["onnxruntime_cpu"] = {k: v for k, v in sorted(loaded.items()) if k in WATCHED}
    log.info("fused ops: %s", report)
    return report
