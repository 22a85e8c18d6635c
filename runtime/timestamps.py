"""Output frames -> seconds in the recording, for CTC character and word offsets.

One output frame of the model covers ``samples_per_frame`` input samples: 10 ms of hop x 2
stacked frames x 2 per adapter layer (640 samples = 40 ms for one layer at 16 kHz), which
is transformers' ``config.inputs_to_logits_ratio``. Chunked long audio keeps, per chunk,
only the frames of its centre; ``Alignment`` carries where each kept frame starts in the
whole recording, so offsets into the concatenated frames become global times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fbank_constants import HOP_LENGTH


def samples_per_frame(config: dict, stride: int) -> int:
    """Input samples per output frame of a model with this config (front-end stacking `stride`)."""
    samples = HOP_LENGTH * int(stride)
    if config.get("add_adapter"):
        samples *= int(config["adapter_stride"]) ** int(config["num_adapter_layers"])
    return samples


@dataclass
class Alignment:
    """One utterance's greedy CTC frame ids and where each frame starts (samples into the recording)."""

    ids: np.ndarray
    starts: np.ndarray
    frame_samples: int
    total_samples: int
    sampling_rate: int

    def span(self, start_offset: int, end_offset: int) -> tuple[float, float]:
        """Frames [start_offset, end_offset) -> (start, end) in seconds, clipped to the recording.

        For unchunked audio this is offset x frame_samples / rate, what transformers' pipeline
        reports, except that an end past the last sample (the last frame can overhang by up
        to one frame) is clipped to the recording's duration.
        """
        duration = self.total_samples / self.sampling_rate
        start = self.starts[start_offset] / self.sampling_rate
        end = (self.starts[end_offset - 1] + self.frame_samples) / self.sampling_rate
        return min(float(start), duration), min(float(end), duration)

    def words(self, word_offsets: list[dict]) -> list[dict]:
        """Tokenizer word offsets -> [{"word", "start", "end"}] in seconds."""
        return [{"word": w["word"], **dict(zip(("start", "end"), self.span(w["start_offset"], w["end_offset"])))}
                for w in word_offsets]
