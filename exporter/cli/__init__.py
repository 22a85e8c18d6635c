"""`w2vbert` command line: a thin shell over exporter/ and runtime/ functions (main: export, verify,
inspect; transcribe). `benchmark` comes from benchmarks.cli through the `w2vbert.commands` entry point."""

from .main import main

__all__ = ["main"]
