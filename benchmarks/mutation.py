"""Mutation testing of the core modules, one module at a time, against that module's own tests.

    python -m benchmarks.mutation run [MODULE ...]   # all of [tool.w2vbert.mutation] by default; hours
    python -m benchmarks.mutation report             # -> benchmarks/results/mutation.md

`run` copies the checkout's sources and tests into ``mutants-work/<module>/`` (git-ignored), writes
a ``[tool.mutmut]`` there that mutates only MODULE and selects only its test files (the table
``[tool.w2vbert.mutation]`` in pyproject.toml), runs ``mutmut run`` in it and keeps the verdicts in
``benchmarks/results/mutation-verdicts/<module>.json`` (tracked: a module's score stands until its next
run, so the hours of runs can be spread over machines and days). A module's own tests judging it keeps
each surviving mutant cheap (it runs every selected test that reaches it) and says what they catch.

A mutant is killed when a test fails on it (or it runs past mutmut's timeout: an infinite loop a
test would notice). Surviving mutants are triaged in benchmarks/results/mutation-triage.json: each
entry says why the mutant cannot be told apart from the original (an equivalent mutant, e.g.
``astype(None)`` for ``astype(np.float64)``); the report lists every survivor without an entry.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRIAGE = RESULTS / "mutation-triage.json"
VERDICTS = RESULTS / "mutation-verdicts"
WORK = ROOT / "mutants-work"
TARGET = 85.0  # percent of mutants killed, per module
KILLED = {"killed", "timeout"}
LINE = re.compile(r"^\s*(\S+): (.+)$")
COPIED = ("runtime", "exporter", "benchmarks", "tests", "setup.cfg")


def read_results(text: str) -> dict[str, str]:
    """`mutmut results --all true` output -> {mutant name: status}."""
    return {m.group(1): m.group(2).strip() for m in map(LINE.match, text.splitlines()) if m}


def module_of(mutant: str) -> str:
    """'runtime.decode.x_greedy_ids__mutmut_3' and 'runtime.session.xǁSessionǁrun__mutmut_1' -> the module."""
    parts = mutant.split(".")
    return ".".join(p for p in parts[: next(i for i, p in enumerate(parts) if p.startswith("x"))])


def plan() -> dict[str, list[str]]:
    """{module path: its test files} from pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["w2vbert"]["mutation"]


def _config(module: str, tests: list[str]) -> str:
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    lines = ["[tool.mutmut]"]
    settings = {**base, "only_mutate": [module], "pytest_add_cli_args_test_selection": tests}
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def run_module(module: str, tests: list[str]) -> Path:
    """mutmut on `module` with `tests`, in a fresh copy of the checkout; -> the verdicts file."""
    slug = _dotted(module)
    folder = WORK / slug
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, folder / name)
    (folder / "pyproject.toml").write_text(_config(module, tests))
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    print(f"mutmut on {module} against {', '.join(tests)}", flush=True)
    with open(folder / "mutmut.log", "wb") as log:
        subprocess.run([mutmut, "run"], cwd=folder, stdout=log, stderr=subprocess.STDOUT, check=False)
    done = subprocess.run([mutmut, "results", "--all", "true"], cwd=folder, capture_output=True, text=True)
    verdicts = read_results(done.stdout)
    if not verdicts:
        raise SystemExit(f"error: mutmut gave no verdicts for {module}; see {folder / 'mutmut.log'}")
    VERDICTS.mkdir(exist_ok=True)
    out = VERDICTS / f"{slug}.json"
    out.write_text(json.dumps(verdicts, indent=1, ensure_ascii=False))
    survivors = {name: _diff(mutmut, folder, name) for name, status in verdicts.items() if status not in KILLED}
    (WORK / f"{slug}.survivors.txt").write_text("".join(f"== {n}: {verdicts[n]}\n{d}\n" for n, d in survivors.items()))
    return out


def _diff(mutmut: str, folder: Path, name: str) -> str:
    """The changed lines of one mutant (what triage reads)."""
    done = subprocess.run([mutmut, "show", name], cwd=folder, capture_output=True, text=True)
    return "\n".join(line for line in done.stdout.splitlines()
                     if line[:1] in "+-" and not line.startswith(("+++", "---")))


def score(statuses: dict[str, str], triage: dict[str, str]) -> list[dict]:
    """One row per module: counts by status, the score and the unexplained survivors."""
    by_module: dict[str, Counter] = defaultdict(Counter)
    unexplained: dict[str, list[str]] = defaultdict(list)
    for mutant, status in statuses.items():
        module = module_of(mutant)
        by_module[module][status] += 1
        if status not in KILLED:
            by_module[module]["explained" if mutant in triage else "unexplained"] += 1
            if mutant not in triage:
                unexplained[module].append(mutant)
    rows = []
    for module, counts in sorted(by_module.items()):
        total = sum(v for k, v in counts.items() if k not in ("explained", "unexplained"))
        killed = sum(counts[k] for k in KILLED)
        rows.append({"module": module, "mutants": total, "killed": killed, "survived": total - killed,
                     "explained": counts["explained"], "score": 100.0 * killed / total if total else 0.0,
                     "score_without_equivalents": 100.0 * killed / max(1, total - counts["explained"]),
                     "unexplained": sorted(unexplained[module])})
    return rows


def markdown(rows: list[dict], machine: str, versions: str, tests: dict[str, list[str]] | None = None,
             missing: list[str] = ()) -> str:
    lines = ["# Mutation testing of the core modules", "",
             "Command: `python -m benchmarks.mutation run` (mutmut once per module, against the module's own test "
             "files: `[tool.w2vbert.mutation]` in pyproject.toml), then `python -m benchmarks.mutation report`.", "",
             f"Machine: {machine}. Versions: {versions}.", "",
             f"Target: at least {TARGET:g}% of each module's mutants killed. Survivors that no test can tell "
             "from the original are explained one by one in `mutation-triage.json`.", "",
             "| module | mutants | killed | survived | of them explained (equivalent) | score | "
             "score without equivalents |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r['module']}` | {r['mutants']} | {r['killed']} | {r['survived']} | {r['explained']} | "
                     f"{r['score']:.1f}% | {r['score_without_equivalents']:.1f}% |")
    lines += [f"| `{_dotted(m)}` | not run yet | | | | | |" for m in missing]
    if tests:
        lines += ["", "Tests judging each module:", ""]
        lines += [f"- `{module}`: {', '.join(f'`{t}`' for t in files)}" for module, files in tests.items()]
    left = [m for r in rows for m in r["unexplained"]]
    lines += ["", f"Unexplained survivors: {len(left)}." if left else "Unexplained survivors: none."]
    lines += [f"- `{m}`" for m in left]
    return "\n".join(lines) + "\n"


def report(out: Path) -> int:
    verdicts: dict[str, str] = {}
    for path in sorted(VERDICTS.glob("*.json")):
        verdicts.update(json.loads(path.read_text()))
    if not verdicts:
        print(f"error: no verdicts under {VERDICTS}: run `python -m benchmarks.mutation run` first", file=sys.stderr)
        return 1
    triage = json.loads(TRIAGE.read_text()) if TRIAGE.is_file() else {}
    rows = score(verdicts, triage)
    from exporter.artifact import tool_versions
    from exporter.machine import describe

    versions = ", ".join(f"{k} {v}" for k, v in tool_versions(("mutmut", "pytest", "hypothesis")).items())
    measured = {r["module"] for r in rows}
    missing = [m for m in plan() if _dotted(m) not in measured]
    out.write_text(markdown(rows, describe(), versions, plan(), missing))
    for m in missing:
        print(f"{_dotted(m):<28} not run yet")
    for r in rows:
        flag = "" if r["score"] >= TARGET else "   below target"
        print(f"{r['module']:<28} {r['killed']:>4}/{r['mutants']:<4} {r['score']:5.1f}%  "
              f"({len(r['unexplained'])} unexplained){flag}")
    print(f"wrote {out}")
    return 0 if not missing and all(r["score"] >= TARGET and not r["unexplained"] for r in rows) else 2


def _dotted(module: str) -> str:
    return module.replace("/", ".").removesuffix(".py")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runner = sub.add_parser("run", help="mutmut per module (all of them unless named)")
    runner.add_argument("modules", nargs="*", help="e.g. runtime/decode.py")
    writer = sub.add_parser("report", help="write the score per module")
    writer.add_argument("-o", "--out", type=Path, default=RESULTS / "mutation.md")
    args = parser.parse_args(argv)
    if args.command == "report":
        return report(args.out)
    table = plan()
    unknown = [m for m in args.modules if m not in table]
    if unknown:
        print(f"error: {', '.join(unknown)} not in [tool.w2vbert.mutation]; it has {', '.join(table)}", file=sys.stderr)
        return 2
    for module in args.modules or table:
        print(f"wrote {run_module(module, table[module])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
