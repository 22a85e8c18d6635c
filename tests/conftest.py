"""Shared builders: tiny seeded transformers checkpoints saved into tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# CI sets this: every test must run there but those that need a GPU; a skip for a missing binary,
# package or header (what a half-done install gives) fails the run instead of passing unseen.
NO_SKIPS = os.environ.get("W2VBERT_NO_SKIPS") == "1"
GPU_MARKERS = ("gpu", "tensorrt")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if NO_SKIPS and report.skipped and not any(item.get_closest_marker(m) for m in GPU_MARKERS) \
            and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"skipped under W2VBERT_NO_SKIPS=1 (CI): {reason}"


# The trained fixture model shipped with the package (see exporter/data/make_fixture.py).
FIXTURE = Path(__file__).resolve().parents[1] / "exporter" / "data" / "w2vbert-digits"

HF_CLASSES = {
    "Model": "Wav2Vec2BertModel",
    "CTC": "Wav2Vec2BertForCTC",
    "SequenceClassification": "Wav2Vec2BertForSequenceClassification",
    "AudioFrameClassification": "Wav2Vec2BertForAudioFrameClassification",
    "XVector": "Wav2Vec2BertForXVector",
}
POSITION_TYPES = [None, "relative", "relative_key", "rotary"]


def tiny_config_dict(position=None, adapter=None, **overrides) -> dict:
    """A 2-layer config; adapter is None, "same" (output == hidden) or "wider" (48 != 32)."""
    config = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        conv_depthwise_kernel_size=5, position_embeddings_type=position, vocab_size=11,
        tdnn_dim=[16, 16, 24], tdnn_kernel=[3, 1, 1], tdnn_dilation=[1, 2, 1], xvector_output_dim=12,
        classifier_proj_size=10, num_labels=3, left_max_position_embeddings=6,
        right_max_position_embeddings=3, max_source_positions=200,
    )
    if adapter:
        config.update(add_adapter=True, num_adapter_layers=2,
                      output_hidden_size=32 if adapter == "same" else 48)
    config.update(overrides)
    return config


def make_hf_model(head: str, config: dict, seed: int = 0):
    """A transformers model with every parameter perturbed (zero-initialised biases hide bugs)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    hf_config = transformers.Wav2Vec2BertConfig(**config)
    model = getattr(transformers, HF_CLASSES[head])(hf_config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


@pytest.fixture
def hf_checkpoint(tmp_path):
    """Factory: save a perturbed transformers model; returns (dir, hf_model)."""

    def build(head="Model", position="relative_key", adapter=None, **overrides):
        model = make_hf_model(head, tiny_config_dict(position, adapter, **overrides))
        path = tmp_path / f"ckpt-{head}-{position}-{adapter}"
        model.save_pretrained(path)
        return path, model

    return build


def padded_batch(frames: int, seed: int = 0, feature_dim: int = 160):
    """3 utterances of frames, ~70% and ~50% of frames, right-padded, with their mask."""
    import numpy as np

    rng = np.random.default_rng(seed)
    features = rng.standard_normal((3, frames, feature_dim)).astype(np.float32)
    mask = np.ones((3, frames), dtype=np.int64)
    mask[1, int(frames * 0.7):] = 0
    mask[2, frames // 2:] = 0
    features[mask == 0] = 0.0
    return features, mask


# Tests that need a reduced-precision variant to exist (to test what is built from it, not to
# judge it) export with these thresholds: far outside what any CPU's int8 kernels give on the
# bundled model, so the variant is written on every instruction set. The gate's own verdicts are
# tested in tests/exporter/test_gates.py, on inputs far from its thresholds.
PERMISSIVE_GATES = ("max_scaled_error=1", "min_cosine=0.5", "min_agreement=0.5", "max_cer=50")


def permissive_gate_args() -> list[str]:
    """PERMISSIVE_GATES as `w2vbert export` arguments."""
    return [arg for gate in PERMISSIVE_GATES for arg in ("--gate", gate)]


def permissive_quant(**options):
    """exporter.steps.precisions.QuantOptions with PERMISSIVE_GATES (and any other option given)."""
    from exporter.quantize.gates import parse_overrides
    from exporter.steps.precisions import QuantOptions

    return QuantOptions(gates=parse_overrides(PERMISSIVE_GATES), **options)


def run_in_threads(work, args: list, timeout: float = 120.0) -> None:
    """work(*a) for each a in `args`, one thread each, all at once. Fails on any exception raised in a
    thread (pytest alone would only warn) and on a thread still running after `timeout` seconds."""
    import threading
    import time

    errors: list[tuple[tuple, BaseException]] = []

    def guarded(*a):
        try:
            work(*a)
        except BaseException as exc:  # noqa: BLE001 - every failure in a thread is reported below
            errors.append((a, exc))

    threads = [threading.Thread(target=guarded, args=tuple(a), daemon=True) for a in args]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = sum(t.is_alive() for t in threads)
    assert not alive, f"{alive} of {len(threads)} threads still running after {timeout:g} s"
    if errors:
        a, first = errors[0]
        raise AssertionError(f"{len(errors)} of {len(threads)} threads failed; the first, with args {a}: "
                             f"{type(first).__name__}: {first}") from first
