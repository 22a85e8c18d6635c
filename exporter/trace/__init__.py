"""torch -> checked ONNX: per-target preparation of the reference, tracing, and the one ONNX writer."""
