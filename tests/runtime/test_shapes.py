from __future__ import annotations

import pytest
import torch

from exporter.model.config import W2VBertConfig
from exporter.model.conformer import conv_output_lengths
from runtime.shapes import min_frames, output_frames
from tests.conftest import tiny_config_dict


@pytest.mark.parametrize("kernel,stride,layers", [(3, 2, 1), (3, 2, 2), (5, 2, 3), (3, 3, 1)])
def test_output_frames_matches_the_model(kernel, stride, layers):
    data = {"model_type": "wav2vec2-bert", **tiny_config_dict(adapter="same"), "adapter_kernel_size": kernel,
            "adapter_stride": stride, "num_adapter_layers": layers}
    config = W2VBertConfig.from_dict(data)
    lengths = torch.arange(1, 200)
    expected = conv_output_lengths(lengths, config).tolist()
    assert [output_frames(n, config.to_dict()) for n in range(1, 200)] == expected


def test_min_frames_for_xvector_with_adapter():
    config = W2VBertConfig.from_dict({"model_type": "wav2vec2-bert", **tiny_config_dict(adapter="same")}).to_dict()
    n = min_frames(config, "XVector")
    # tdnn kernels (3, 1, 1) with dilation (1, 2, 1): 2 frames of receptive field, 2 pooled frames for std
    assert output_frames(n, config) >= 4 and output_frames(n - 1, config) < 4
    assert min_frames(config, "CTC") == 1
