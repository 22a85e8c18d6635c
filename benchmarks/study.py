"""What every study's result file shares: the machine line, the versions, and the writing itself."""

from __future__ import annotations

import platform
from pathlib import Path


def machine_line(extra: dict[str, str] | None = None, tools: tuple[str, ...] = ()) -> str:
    """'Machine: <CPU, ISA, int8 kernel>; Python 3.11.7; torch ..., onnxruntime ...': the CPU first, as
    every result must name it, then each tool version (`extra` ones too)."""
    from exporter.artifact import tool_versions
    from exporter.machine import describe

    versions = {**(extra or {}), **tool_versions(tools)}
    return f"Machine: {describe()}; Python {platform.python_version()}; " + \
        ", ".join(f"{k} {v}" for k, v in versions.items())


def write_study(path: Path, lines: list[str], extra: dict[str, str] | None = None, tools: tuple[str, ...] = (),
                echo: bool = True) -> None:
    """`lines`, then a blank line and the machine line, to `path` (its folder made); printed too."""
    text = "\n".join([*lines, "", machine_line(extra, tools), ""])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if echo:
        print(text)
