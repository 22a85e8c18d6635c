"""What every `w2vbert` command shares: logging levels, -q / -v anywhere on the line, and turning a
missing optional dependency into the package's DependencyError (exit 8, with the pip command)."""

from __future__ import annotations

import functools
import logging
import sys

import click

from runtime.errors import DependencyError

log = logging.getLogger("w2vbert")

# top-level module of an optional dependency -> the extra that installs it
EXTRAS = {"torch": "export", "onnx": "export", "onnxsim": "export", "polygraphy": "export",
          "safetensors": "export", "onnx_ir": "export", "cpuinfo": "export", "onnxruntime": "cpu",
          "soundfile": "cpu", "scipy": "cpu", "numba": "cpu", "matplotlib": "bench", "rich": "bench",
          "tensorrt": "gpu", "transformers": "test", "pytriton": "serve", "tritonclient": "serve"}


def configure_logging(debug: bool = False, quiet: bool = False, verbose: bool = False) -> None:
    """Our lines go to stderr as `[w2vbert] ...`; -q keeps warnings and errors, -v adds debug lines
    and the libraries' own warnings (exporter.quantize.convert shows onnxruntime's only then)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[w2vbert] %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug or verbose else logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def verbosity(command):
    """-q / -v on a subcommand (as on the group): `w2vbert export -o OUT -q` works too."""
    @click.option("-q", "--quiet", "sub_quiet", is_flag=True, help="Only print warnings, errors and results.")
    @click.option("-v", "--verbose", "sub_verbose", is_flag=True,
                  help="Also print debug lines and the libraries' own warnings.")
    @functools.wraps(command)
    def wrapped(*args, sub_quiet=False, sub_verbose=False, **kwargs):
        ctx = click.get_current_context()
        settings = ctx.find_root().obj or {}
        if sub_quiet or sub_verbose:
            settings["quiet"] = settings.get("quiet") or sub_quiet
            settings["verbose"] = settings.get("verbose") or sub_verbose
            configure_logging(settings.get("debug", False), settings["quiet"], settings["verbose"])
        return command(*args, **kwargs)
    return wrapped


def missing_extra(exc: ImportError) -> DependencyError | None:
    """DependencyError naming the extra for an import of an optional dependency that failed."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in EXTRAS:
        return None
    return DependencyError(f"this command needs the Python package '{name}', which is not importable ({exc}). "
                           f"Install it with: pip install 'w2vbert-deploy[{EXTRAS[name]}]'")
