"""Per-layer sensitivity to quantization, and `--keep-fp32 auto`.

Weight MatMuls are grouped by layer (``.../encoder/layers.7/...`` -> ``encoder/layers.7``;
anything outside a layer by its first two path parts, e.g. ``feature_projection``).
A group's sensitivity is the damage done when ONLY that group is quantized:

    damage = (1 - cosine) + (1 - agreement) + CER / 100      (terms the head has)

measured by the same held-out gate evaluation the export uses. `auto` then keeps the
most damaging groups in fp32, one more at a time, until the gate passes. The cost is
one quantization per group plus one per attempt: cheap on small models, minutes per
group on the 600M one -- it runs only when asked for and only after a failed gate.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict

log = logging.getLogger("w2vbert")

_LAYER = re.compile(r"^/?(?:[^/]+/)*?((?:encoder|adapter)[^/]*/layers\.\d+)/")


def group_of(node_name: str) -> str:
    match = _LAYER.match(node_name)
    if match:
        return match.group(1)
    parts = [p for p in node_name.split("/") if p]
    return "/".join(parts[1:3] if len(parts) > 3 else parts[:-1]) or node_name


def layer_groups(names: list[str]) -> "OrderedDict[str, list[str]]":
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for name in names:
        groups.setdefault(group_of(name), []).append(name)
    return groups


def damage(metrics: dict) -> float:
    score = 1.0 - metrics["cosine"]
    if "agreement" in metrics:
        score += 1.0 - metrics["agreement"]
    if "cer" in metrics:
        score += metrics["cer"] / 100.0
    return score if metrics["finite"] else float("inf")


def rank(names: list[str], build_and_gate) -> list[tuple[str, float]]:
    """Groups sorted by damage, most damaging first. `build_and_gate(exclude) -> GateResult`."""
    groups = layer_groups(names)
    scores = []
    for i, (group, members) in enumerate(groups.items(), 1):
        others = [n for n in names if n not in set(members)]
        result = build_and_gate(others)
        scores.append((group, damage(result.metrics)))
        log.info("  sensitivity %d/%d %-40s damage %.3g", i, len(groups), group, scores[-1][1])
    return sorted(scores, key=lambda s: -s[1])


def keep_until_pass(names: list[str], ranking: list[tuple[str, float]], build_and_gate):
    """Keep the top-k groups in fp32 for k = 1, 2, ... until the gate passes.

    Returns (GateResult, kept names); the last result failed if even keeping every
    ranked group did not pass.
    """
    groups = layer_groups(names)
    kept: list[str] = []
    result = None
    for k, (group, _) in enumerate(ranking, 1):
        kept += groups[group]
        result = build_and_gate(kept)
        log.info("  keeping %d group(s) in fp32 (last: %s): gate %s", k, group,
                 "passed" if result.passed else "failed")
        if result.passed:
            break
    return result, kept
