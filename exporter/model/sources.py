"""Where a model comes from: a checkpoint directory, a preset name, or the bundled default (no torch).

Resolved once per export (exporter.plan); :func:`exporter.model.checkpoint.load_model` takes
the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.errors import CheckpointError

from .config import W2VBertConfig
from .presets import PRESETS, preset_config

# The trained fixture model shipped as package data (exporter/data/make_fixture.py).
BUNDLED = Path(__file__).resolve().parents[1] / "data" / "w2vbert-digits"
# Files copied from a checkpoint into an artifact when present.
SIDE_FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json",
              "preprocessor_config.json", "added_tokens.json")


@dataclass(frozen=True)
class Source:
    name: str  # the preset name, or the checkpoint directory as given
    kind: str  # "preset" | "dir"
    path: Path | None  # the checkpoint directory (None for a preset)

    def config(self) -> W2VBertConfig:
        if self.kind == "preset":
            return preset_config(self.name)
        return W2VBertConfig.from_json_file(self.path / "config.json")

    @property
    def label(self) -> str:
        """What the manifest records as `source`: the absolute checkpoint path or the preset name."""
        return str(self.path.resolve()) if self.path is not None else self.name


def default_source() -> str:
    """What `w2vbert export` uses without SOURCE: the bundled trained CTC model."""
    if not (BUNDLED / "config.json").is_file():
        raise CheckpointError(f"the bundled model is missing from {BUNDLED}; reinstall w2vbert-deploy "
                              "or pass a SOURCE")
    return str(BUNDLED)


def resolve_source(source: str | Path | None) -> Source:
    """A checkpoint dir or a preset name (None: the bundled model); a clear error for anything else."""
    source = default_source() if source is None else source
    if isinstance(source, str) and source in PRESETS:
        return Source(source, "preset", None)
    path = Path(source)
    if path.is_dir():
        return Source(str(source), "dir", path)
    if path.exists():
        raise CheckpointError(f"checkpoint source {str(source)!r} is a file; expected a Hugging Face "
                              "checkpoint directory (config.json + model.safetensors)")
    raise CheckpointError(f"checkpoint source {str(source)!r} is neither an existing directory nor a "
                          f"preset; presets: {', '.join(PRESETS)}")
