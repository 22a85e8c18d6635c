"""Run a TensorRT engine plan (``model.<precision>.plan``) with numpy in and out.

Loaded lazily by ``Session(provider="trt-engine")``: tensorrt and polygraphy come with the
`gpu` extra and are never imported by ``import runtime``. Every call is checked against
the optimization profile recorded in the manifest before TensorRT sees it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ArtifactError, require
from .trt_profile import check_in_profile

INSTALL_HINT = "pip install 'w2vbert-deploy[gpu]' on a machine with an NVIDIA GPU and driver"


class EngineRunner:
    """A deserialized engine and one execution context (one runner per thread)."""

    def __init__(self, plan: Path, entry: dict):
        require("tensorrt", "gpu", f"running a TensorRT engine ({INSTALL_HINT})")
        polygraphy_trt = require("polygraphy.backend.trt", "gpu", f"running a TensorRT engine ({INSTALL_HINT})")
        self.profile = entry["profile"]
        try:
            engine = polygraphy_trt.engine_from_bytes(Path(plan).read_bytes())
        except Exception as exc:  # a plan from another TensorRT version or GPU does not deserialize
            raise ArtifactError(f"TensorRT cannot load {plan} (built with TensorRT {entry.get('tensorrt')} on "
                                f"{entry.get('gpu')}, sm {entry.get('compute_capability')}): {exc}. "
                                "Rebuild it here with w2vbert export --target tensorrt --engine") from exc
        self._runner = polygraphy_trt.TrtRunner(engine)
        self._runner.activate()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch, frames = feeds["attention_mask"].shape
        check_in_profile(batch, frames, self.profile)
        outputs = self._runner.infer(feeds, copy_outputs_to_host=True)
        return {name: np.asarray(value) for name, value in outputs.items()}

    def close(self) -> None:
        self._runner.deactivate()
