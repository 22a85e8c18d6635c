"""Mutation score per core module, from the last `mutmut run` (configured in pyproject.toml).

    mutmut run                       # in the repository root; a few hours on 2 cores
    python -m benchmarks.mutation    # -> benchmarks/results/mutation.md

A mutant is killed when a test fails on it (or it runs past mutmut's timeout: an infinite loop
the tests would notice). Surviving mutants are triaged in benchmarks/results/mutation-triage.json:
each entry says why the mutant cannot be told apart from the original (an equivalent mutant, e.g.
``astype(None)`` for ``astype(np.float64)``), and the report lists any survivor without an entry, so
a new one is either killed by a test or explained. The score is killed / mutants; the column beside
it leaves the explained equivalents out.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRIAGE = RESULTS / "mutation-triage.json"
TARGET = 85.0  # percent of mutants killed, per module
KILLED = {"killed", "timeout"}
LINE = re.compile(r"^\s*(\S+): (.+)$")


def read_results(text: str) -> dict[str, str]:
    """`mutmut results --all true` output -> {mutant name: status}."""
    return {m.group(1): m.group(2).strip() for m in map(LINE.match, text.splitlines()) if m}


def module_of(mutant: str) -> str:
    """'runtime.decode.x_greedy_ids__mutmut_3' and 'runtime.session.xǁSessionǁrun__mutmut_1' -> the module."""
    parts = mutant.split(".")
    return ".".join(p for p in parts[: next(i for i, p in enumerate(parts) if p.startswith("x"))])


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


def markdown(rows: list[dict], machine: str, versions: str) -> str:
    lines = ["# Mutation testing of the core modules", "",
             "Command: `mutmut run` (configuration and test selection: `[tool.mutmut]` in pyproject.toml), then "
             "`python -m benchmarks.mutation`.", "", f"Machine: {machine}. Versions: {versions}.", "",
             f"Target: at least {TARGET:g}% of each module's mutants killed. Survivors that no test can tell "
             "from the original are explained one by one in `mutation-triage.json`.", "",
             "| module | mutants | killed | survived | of them explained (equivalent) | score | "
             "score without equivalents |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r['module']}` | {r['mutants']} | {r['killed']} | {r['survived']} | {r['explained']} | "
                     f"{r['score']:.1f}% | {r['score_without_equivalents']:.1f}% |")
    left = [(r["module"], m) for r in rows for m in r["unexplained"]]
    lines += ["", f"Unexplained survivors: {len(left)}." if left else "Unexplained survivors: none."]
    lines += [f"- `{m}`" for _, m in left]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=RESULTS / "mutation.md")
    args = parser.parse_args(argv)
    mutmut = Path(sys.executable).with_name("mutmut")
    done = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not (ROOT / "mutants").is_dir():
        print(f"error: no mutmut results here (run `mutmut run` first): {done.stderr.strip()[-300:]}",
              file=sys.stderr)
        return 1
    triage = json.loads(TRIAGE.read_text()) if TRIAGE.is_file() else {}
    rows = score(read_results(done.stdout), triage)
    from exporter.artifact import tool_versions
    from exporter.machine import describe

    versions = ", ".join(f"{k} {v}" for k, v in tool_versions(("mutmut",)).items())
    args.out.write_text(markdown(rows, describe(), versions))
    for r in rows:
        flag = "" if r["score"] >= TARGET else "   below target"
        print(f"{r['module']:<28} {r['killed']:>4}/{r['mutants']:<4} {r['score']:5.1f}%  "
              f"({len(r['unexplained'])} unexplained){flag}")
    print(f"wrote {args.out}")
    return 0 if all(r["score"] >= TARGET and not r["unexplained"] for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
