"""``load_model(source, head=None)``: checkpoint directory | preset name | bundled default -> reference module.

Weights are read from safetensors when present (never executes anything);
``pytorch_model.bin`` is read only with ``torch.load(weights_only=True)``.
Every key problem (missing, unexpected, mis-shaped) is collected into one error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from runtime.errors import CheckpointError, ConfigError

from .config import W2VBertConfig
from .heads import build_model
from .presets import init_like_transformers
from .registry import HEAD_NAMES
from .sources import Source, resolve_source

log = logging.getLogger("w2vbert")

BASE_PREFIX = "wav2vec2_bert."


def load_model(source: str | Path | None = None, head: str | None = None) -> nn.Module:
    """The reference model of `source` in eval mode; `head` overrides config `architectures`."""
    return load_resolved(resolve_source(source), head)


def load_resolved(source: Source, head: str | None = None, config: W2VBertConfig | None = None) -> nn.Module:
    """load_model for an already resolved source (and its config, when the caller has read it)."""
    if head is not None and head not in HEAD_NAMES:
        raise ConfigError(f"unknown head {head!r}; expected one of {HEAD_NAMES}")
    config = config or source.config()
    model = build_model(config, head)
    if source.kind == "preset":
        init_like_transformers(model)
        return model.eval()
    state = read_state_dict(source.path)
    load_into(model, state, config, source=str(source.path))
    return model.eval()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint dir: (sharded) safetensors, else (sharded) pytorch_model.bin."""
    for index_name, reader in (("model.safetensors.index.json", _read_safetensors),
                               ("pytorch_model.bin.index.json", _read_torch_bin)):
        if (path / index_name).is_file():
            return _read_sharded(path, index_name, reader)
    if (path / "model.safetensors").is_file():
        return _read_safetensors(path / "model.safetensors")
    if (path / "pytorch_model.bin").is_file():
        return _read_torch_bin(path / "pytorch_model.bin")
    raise CheckpointError(f"no weights in {path}: expected model.safetensors, "
                          "model.safetensors.index.json, or pytorch_model.bin")


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {file}: {exc} (truncated or not a safetensors file?)") from exc


def _read_torch_bin(file: Path) -> dict[str, torch.Tensor]:
    log.warning("reading %s with torch.load(weights_only=True); prefer model.safetensors", file)
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError)
        raise CheckpointError(f"cannot read {file} as a weights-only PyTorch state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds a {type(state).__name__}, expected a state dict")
    return state


def _read_sharded(path: Path, index_name: str, reader) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads((path / index_name).read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path / index_name} is not a valid shard index: {exc}") from exc
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = (path / shard).resolve()
        if path.resolve() not in shard_path.parents:
            raise CheckpointError(f"shard {shard!r} in {index_name} points outside {path}")
        if not shard_path.is_file():
            raise CheckpointError(f"shard {shard!r} listed in {index_name} is missing from {path}")
        state.update(reader(shard_path))
    return state


def _align_prefix(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map base-model keys and head-model keys onto the requested head's naming."""
    wants_prefix = any(k.startswith(BASE_PREFIX) for k in model.state_dict())
    has_prefix = any(k.startswith(BASE_PREFIX) for k in state)
    if wants_prefix and not has_prefix:
        return {BASE_PREFIX + k: v for k, v in state.items()}
    if has_prefix and not wants_prefix:
        dropped = sorted(k for k in state if not k.startswith(BASE_PREFIX))
        if dropped:
            log.info("loading the bare encoder: ignoring %d head weights (%s, ...)", len(dropped), dropped[0])
        return {k[len(BASE_PREFIX):]: v for k, v in state.items() if k.startswith(BASE_PREFIX)}
    return state


def load_into(model: nn.Module, state: dict[str, torch.Tensor], config: W2VBertConfig, source: str) -> None:
    state = _align_prefix(state, model)
    expected = model.state_dict()
    head = getattr(model, "head", "?")
    checkpoint_head = config.default_head
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if head != checkpoint_head:
        # Head weights of another architecture are not an error when a head is asked for.
        unexpected = [k for k in unexpected if k.startswith(BASE_PREFIX)]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mismatched)):
        if items:
            shown = ", ".join(items[:20]) + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")
            problems.append(f"{len(items)} {title}: {shown}")
    if problems:
        raise CheckpointError(f"weights in {source} do not fit the {head} head of its config.json: "
                              + "; ".join(problems))
    floats = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items() if k in expected}
    model.load_state_dict(floats, strict=True)
