"""Run a TensorRT engine plan (``model.<precision>.plan``) with numpy in and out.

Loaded lazily by ``Session(provider="trt-engine")``: tensorrt and polygraphy come with the
`gpu` extra and are never imported by ``import runtime``. Every call is checked against
the optimization profile recorded in the manifest before TensorRT sees it.

polygraphy's ``TrtRunner`` owns one execution context, one stream and output buffers that
it reuses on the next call, while a Session is documented as shareable by threads: calls
are serialised by a lock, and outputs are copied out of the runner's buffers.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .errors import ArtifactError, require
from .trt_profile import check_in_profile

INSTALL_HINT = "pip install 'w2vbert-deploy[gpu]' on a machine with an NVIDIA GPU and driver"


class EngineRunner:
    """A deserialized engine and one execution context, used by one call at a time."""

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
        self._lock = threading.Lock()
        self._runner = polygraphy_trt.TrtRunner(engine)
        self._runner.activate()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch, frames = feeds["attention_mask"].shape
        check_in_profile(batch, frames, self.profile)
        with self._lock:
            if self._runner is None:
                raise ArtifactError("this TensorRT engine was closed (Session.close); load the Session again")
            outputs = self._runner.infer(feeds, copy_outputs_to_host=True)
            # copies: the runner writes the next call's outputs into the same host buffers
            return {name: np.array(value, copy=True) for name, value in outputs.items()}

    def close(self) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.deactivate()
                self._runner = None
