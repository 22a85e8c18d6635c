"""ONNX -> ONNX rewrites and read-only checks, one per module; none of them imports torch."""
