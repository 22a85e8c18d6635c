"""What an export will do, decided and checked before any slow work (no torch).

The CLI reads its choices from here (targets, precisions, calibrators, heads); `export`
builds one :class:`ExportPlan`, which resolves the source, reads its config, picks the
head and checks every option once, so a bad option fails in milliseconds, not after
tracing a 600M model.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import OptionError
from runtime.manifest import MANIFEST_NAME, SCHEMA
from runtime.precisions import PRECISIONS
from runtime.shapes import min_frames

from .model.config import W2VBertConfig
from .model.registry import HEAD_NAMES  # noqa: F401 - the CLI's --head choices
from .model.sources import Source, resolve_source

TARGETS = ("ort", "tensorrt")
DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization
MAX_OPSET = 20  # torch 2.13's TorchScript exporter (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
CALIBRATORS = ("percentile", "entropy", "minmax")


def check_precision(precision: str, target: str) -> None:
    """A precision of runtime.precisions that can be built for `target` (int8 dynamic and int4 use
    onnxruntime-only operators)."""
    if precision not in PRECISIONS:
        raise OptionError(f"precision {precision!r} is unknown; expected one of {', '.join(PRECISIONS)}")
    if target not in PRECISIONS[precision].targets:
        hint = " (use int8-qdq: explicit Q/DQ that TensorRT builds)" if precision == "int8" else ""
        raise OptionError(f"precision {precision} cannot target {target}: it needs onnxruntime-only "
                          f"operators{hint}")


def triton_model_name(prefix: str, precision: str) -> str:
    """The Triton model (folder) name of one ONNX variant."""
    return f"{prefix}_{precision.replace('-', '_')}"


def check_out(out: Path, force: bool) -> None:
    """OUT may be new, an empty directory, or (with --force) an artifact written by w2vbert -- nothing else.

    A directory of the user's is never replaced, --force or not."""
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise OptionError(f"output {out} is the current directory or holds it; choose a new directory for OUT")
    _check_creatable(out, "output")  # the staging directory is made beside OUT
    if not out.exists():
        return
    if not out.is_dir():
        raise OptionError(f"output {out} exists and is not a directory; choose a new directory for OUT")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    foreign = _foreign_entries(out, entries)
    if foreign is None:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise OptionError(f"output {out} holds {shown} and is no w2vbert artifact: --force only replaces an "
                          "artifact written by w2vbert; choose another OUT")
    if foreign:
        raise OptionError(f"output {out} is a w2vbert artifact but also holds {', '.join(foreign[:3])}, which "
                          "its manifest does not list; move them away before replacing it")
    if not force:
        raise OptionError(f"output {out} already exists; pass --force to replace it")


def _foreign_entries(folder: Path, entries: list[str]) -> list[str] | None:
    """Entries of an artifact dir its manifest does not list; None when `folder` is no artifact."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("files"), dict):
        return None
    listed = set(data["files"]) | {name.split("/", 1)[0] for name in data["files"]}  # files and their folders
    return [e for e in entries if e != MANIFEST_NAME and e not in listed]


def _check_creatable(path: Path, what: str) -> None:
    """Something can be created beside `path`: its nearest existing ancestor is a directory that
    accepts a new entry (tried: some refuse what os.access allows, e.g. /proc)."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OptionError(f"{what} {path} cannot be created: {ancestor} is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".w2vbert-probe-", dir=ancestor))
    except OSError as exc:
        raise OptionError(f"{what} {path} cannot be created in {ancestor}: {exc.strerror or exc}") from exc


@dataclass
class TritonPlan:
    repo: Path
    name: str | None = None  # model name prefix; default w2vbert_<head>
    gpu: bool = False
    max_batch: int = 8


def check_triton(triton: TritonPlan, head: str, precisions, force: bool) -> None:
    """The repository must be a directory (or creatable); model folders it would replace need --force."""
    repo = triton.repo
    if repo.exists() and not repo.is_dir():
        raise OptionError(f"--triton-repo {repo} exists and is not a directory")
    if not repo.exists():
        _check_creatable(repo, "--triton-repo")
        return
    prefix = triton.name or f"w2vbert_{head.lower()}"
    names = [triton_model_name(prefix, p) for p in precisions] + [f"{prefix}_audio"]
    taken = [name for name in names if (repo / name).exists()]
    foreign = [name for name in taken if not (repo / name / "config.pbtxt").is_file()]
    if foreign:
        raise OptionError(f"--triton-repo {repo} holds {', '.join(foreign)}, which are not Triton models written "
                          "by w2vbert (no config.pbtxt); refusing to replace them")
    if taken and not force:
        raise OptionError(f"--triton-repo {repo} already holds {', '.join(taken)}; pass --force to replace "
                          "those models (only folders holding a config.pbtxt are ever replaced)")


@dataclass
class ExportPlan:
    source: Source
    config: W2VBertConfig
    head: str
    out: Path
    opset: int = DEFAULT_OPSET
    precisions: tuple[str, ...] = ("fp32",)
    target: str = "ort"
    force: bool = False
    with_frontend: bool = False
    engine: dict | None = None  # runtime.trt_profile.ShapeProfile.from_seconds keyword arguments
    engine_cache: Path | None = None
    triton: TritonPlan | None = None
    sherpa_onnx: bool = False
    profile: object = field(default=None, repr=False)  # the engines' ShapeProfile, when engine is given

    @property
    def min_frames(self) -> int:
        return min_frames(self.config.to_dict(), self.head)

    @property
    def engine_precisions(self) -> list[str]:
        """The TensorRT plans built from this export's variants, each strongly typed from the variant the
        gate judged (fp16 from model.fp16.onnx, int8 from int8-qdq's Q/DQ nodes)."""
        return [PRECISIONS[p].plan for p in self.precisions if PRECISIONS[p].plan]


def make_plan(source=None, out="w2vbert-artifact", head: str | None = None, opset: int = DEFAULT_OPSET,
              precisions=("fp32",), force: bool = False, with_frontend: bool = False, target: str = "ort",
              engine: dict | None = None, engine_cache=None, triton: TritonPlan | None = None,
              sherpa_onnx: bool = False) -> ExportPlan:
    """Check every option, resolve the source and read its config; raise before any slow work."""
    if target not in TARGETS:
        raise OptionError(f"target {target!r} is unknown; expected one of {', '.join(TARGETS)}")
    for precision in precisions:
        check_precision(precision, target)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise OptionError(f"opset {opset} is outside {MIN_OPSET}..{MAX_OPSET} (LayerNormalization needs "
                          f"{MIN_OPSET}; torch's TorchScript exporter stops at {MAX_OPSET})")
    if engine is not None and target != "tensorrt":
        raise OptionError("--engine needs --target tensorrt (engines are built from standard-op ONNX)")
    out = Path(out)
    check_out(out, force)
    resolved = resolve_source(source)
    config = resolved.config()
    head = head or config.default_head
    config.check_head(head)
    if triton is not None:
        check_triton(triton, head, ["fp32", *precisions], force)
    if sherpa_onnx:
        _check_sherpa(resolved, head)
    plan = ExportPlan(resolved, config, head, out, opset, tuple(precisions), target, force, with_frontend,
                      engine, Path(engine_cache) if engine_cache else None, triton, sherpa_onnx)
    if engine is not None:
        plan.profile = _engine_profile(plan)
    return plan


def _check_sherpa(source: Source, head: str) -> None:
    """sherpa-onnx runs CTC models with a tokens list: refused before any work otherwise."""
    if head != "CTC":
        raise OptionError(f"--sherpa-onnx exports CTC heads (sherpa-onnx's fire_red_asr_ctc model type); this "
                          f"export's head is {head}")
    if source.path is None or not (source.path / "vocab.json").is_file():
        raise OptionError(f"--sherpa-onnx needs the checkpoint's vocab.json for tokens.txt; {source.name} has none")


def _engine_profile(plan: ExportPlan):
    """The engines' profile; no TensorRT or no GPU fails here, before the slow part."""
    from runtime.errors import require
    from runtime.trt_cache import gpu_identity
    from runtime.trt_profile import INSTALL_HINT, ShapeProfile

    profile = ShapeProfile.from_seconds(**plan.engine, model_min_frames=plan.min_frames)
    require("tensorrt", "gpu", f"building TensorRT engines ({INSTALL_HINT})")
    gpu_identity()
    return profile
