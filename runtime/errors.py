"""One exception hierarchy for the whole package.

Every error a user can cause derives from :class:`W2VBertError`, so callers can
catch one type; the subclasses tell the CLI which exit code to use. Messages
name what was given, what was expected and, where there is one, the fix.
"""

from __future__ import annotations


class W2VBertError(Exception):
    """Base class of every error raised on purpose by w2vbert-deploy."""

    exit_code = 1


class ConfigError(W2VBertError, ValueError):
    """A model configuration is unreadable, of the wrong model type, or impossible."""

    exit_code = 3


class CheckpointError(W2VBertError):
    """A checkpoint cannot be found or its weights do not fit the configuration."""

    exit_code = 4


class InputError(W2VBertError, ValueError):
    """An argument, array or audio file given by the user is unusable (exit code 2)."""

    exit_code = 2


class ArtifactError(W2VBertError):
    """An exported artifact is missing, corrupt, tampered with or of an unknown schema."""

    exit_code = 5


class ExportError(W2VBertError):
    """Export failed (tracing, ONNX checks, or writing the artifact)."""

    exit_code = 6


class OptionError(InputError, ExportError):
    """An export option is invalid: bad input (exit code 2), caught as an ExportError by export callers."""


class ParityError(ExportError):
    """An exported model disagrees with the PyTorch reference beyond tolerance."""

    exit_code = 7


class GateError(ParityError):
    """A reduced-precision variant (fp16, int8, int4) failed its task-accuracy gate (exit code 7, as parity)."""


class DependencyError(W2VBertError, ImportError):
    """An optional dependency (an extra of the package) is not installed."""

    exit_code = 8


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or fail with the pip command that fixes it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"{purpose} needs the Python package '{module}', which is not importable "
            f"({exc}). Install it with: pip install 'w2vbert-deploy[{extra}]'"
        ) from exc
