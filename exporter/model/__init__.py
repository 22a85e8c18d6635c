"""The PyTorch reference of Wav2Vec2-BERT: config, Conformer encoder, attention, heads, checkpoints.

Knows nothing of ONNX files; :mod:`exporter.model.registry` (no torch) lists the heads.
"""
