"""The Kaldi fbank front end's fixed parameters (SeamlessM4TFeatureExtractor's), in one place.

Read by both front ends (runtime.features, runtime.fbank_numba), by the length arithmetic
(runtime.shapes) and by the exporter's traced front end (exporter.model.frontend).
"""

FRAME_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms
FFT_LENGTH = 512
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
VARIANCE_EPS = 1e-7
# Normalisation uses an unbiased variance: an utterance needs 2 fbank frames.
MIN_SAMPLES = FRAME_LENGTH + HOP_LENGTH
