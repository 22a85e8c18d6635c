"""Deployment targets built from an artifact: TensorRT engine plans, Triton model repositories."""
