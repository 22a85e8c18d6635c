"""README.md's Python snippets run as a user runs them: pasted into Python in a directory holding the
README's `artifact` (from `w2vbert export -o artifact`) and the repository's sample paths."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def snippets() -> list[str]:
    """The README's Python blocks that use our runtime (servers and sherpa-onnx have tests of their own)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b for b in blocks if "from runtime import" in b]


def printing(code: str) -> str:
    """The snippet with each bare expression printed (what an interactive session would show)."""
    tree = ast.parse(code)
    tree.body = [ast.Expr(ast.Call(ast.Name("print", ast.Load()), [s.value], [])) if isinstance(s, ast.Expr) else s
                 for s in tree.body]
    return ast.unparse(ast.fix_missing_locations(tree))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from exporter.export import export

    folder = tmp_path_factory.mktemp("user")
    export(None, folder / "artifact")
    (folder / "exporter").symlink_to(ROOT / "exporter")  # the README's sample paths, relative to the checkout
    return folder


def test_the_readme_has_the_runtime_snippets():
    assert len(snippets()) == 2


@pytest.mark.parametrize("index", range(len(snippets())))
def test_readme_snippet_runs(workdir, index):
    done = subprocess.run([sys.executable, "-c", printing(snippets()[index])], cwd=workdir, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = done.stdout.splitlines()
    if "from transformers import" in snippets()[index]:  # the switch: both halves show the same chunks
        assert len(shown) == 2 and shown[0] == shown[1] and "'text': 'four'" in shown[0], shown


@pytest.mark.parametrize("written", ["artifact/manifest.json", "subtitles/a.srt", "embeddings/a.npy",
                                     "benchmark-results/results.json", ".venv/bin/python"])
def test_what_the_readme_commands_write_into_the_checkout_is_ignored(written):
    """`w2vbert export -o artifact`, transcribe's default --out-dir (subtitles / embeddings), benchmark's
    default -o and the README's venv stay out of `git status`."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an installed copy): nothing to ignore")
    done = subprocess.run(["git", "check-ignore", "--no-index", "-q", written], cwd=ROOT)
    assert done.returncode == 0, f"{written} is not covered by .gitignore"


def _architecture() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Architecture"):].split("```text\n", 1)[1].split("```", 1)[0]


def test_the_architecture_names_every_module_and_folder_there_is():
    block = _architecture()
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", block))
    for package in ("exporter", "runtime", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.stem.startswith("__") or "results" in path.parts:
                continue
            assert path.stem in words, f"README's Architecture does not name {path.relative_to(ROOT)}"
        for folder in sorted(p for p in (ROOT / package).iterdir() if p.is_dir() and (p / "__init__.py").is_file()):
            assert f"{folder.name}/" in block, f"README's Architecture does not name {folder.relative_to(ROOT)}/"


def test_the_architecture_names_only_files_that_exist():
    for name in re.findall(r"([a-z_]+\.py)", _architecture()):
        assert list(ROOT.glob(f"*/{name}")) or list(ROOT.glob(f"*/*/{name}")), f"README names {name}, which is gone"


def test_the_readme_is_a_first_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
