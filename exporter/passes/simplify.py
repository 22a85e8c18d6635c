"""onnxsim over an exported graph, for models below and above the 2 GB protobuf limit.

Runs after consolidation, before the checker and the parity check (which then
vouch for the simplified graph). MatMul + Add is not turned into Gemm: Gemm is
2-D only, so onnxsim would wrap it in Reshapes, and MatMul is what the fused
kernels and the int8 quantizer want.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.errors import ExportError

from ..trace.onnx_io import save, set_metadata

log = logging.getLogger("w2vbert")
SKIPPED = ["fuse_matmul_add_bias_into_gemm", "fuse_matmul_add_bias_into_gemm_batched"]


def simplify(path: Path, files: list[str]) -> None:
    """Simplify `path` in place (keeping its one external data file, if it has one)."""
    import onnx
    import onnxsim

    before = onnx.load(str(path), load_external_data=False)
    nodes_before = len(before.graph.node)
    external = len(files) > 1
    try:
        if external:
            # Large models: onnxsim reads the external data and writes it back to one file.
            simplified, ok = onnxsim.simplify(str(path), skipped_optimizers=SKIPPED, check_n=0,
                                              tensor_size_threshold="1.5GB", external_data_threshold="1KB")
        else:
            simplified, ok = onnxsim.simplify(before, skipped_optimizers=SKIPPED, check_n=0)
    except Exception as exc:  # onnxsim raises plain RuntimeErrors from its C++ core
        raise ExportError(f"onnxsim failed on {path.name}: {type(exc).__name__}: {exc}") from exc
    if not ok:
        raise ExportError(f"onnxsim could not validate the simplified {path.name}")
    set_metadata(simplified, {p.key: p.value for p in before.metadata_props}, replace=True)
    if external:
        # Pull every tensor into memory, then rewrite the data file from scratch: onnx appends to
        # an existing data file, so writing over it would hold every weight twice.
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(simplified, str(path.parent))
        (path.parent / files[1]).unlink()
        save(simplified, path, files[1])
    else:
        save(simplified, path)
    log.info("onnxsim: %d -> %d nodes", nodes_before, len(simplified.graph.node))
