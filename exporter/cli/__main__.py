"""python -m exporter.cli: the `w2vbert` command."""

from .main import main

main()
