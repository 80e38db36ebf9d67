"""The Grafana dashboard in docs/grafana/kamicore.json queries only metrics kamicore exports:
every metric name in every panel's PromQL is declared in core/metrics.py (a counter queried
with its _total suffix, a histogram with _bucket, _sum or _count), and each label it selects
or groups by is one that metric declares."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "docs" / "grafana" / "kamicore.json"
SUFFIXES = ("_total", "_bucket", "_sum", "_count")
PROMQL_WORDS = {"by", "le", "without"}


def declared() -> dict[str, set[str]]:
    """Metric name -> its labels, from each Counter/Histogram/Gauge(...) call of
    core/metrics.py (the first string argument; labels from a list of strings)."""
    tree = ast.parse((REPO / "core" / "metrics.py").read_text())
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)
                and first.value.startswith("kamicore_")):
            continue
        lists = [arg for arg in node.args[1:] if isinstance(arg, ast.List)]
        lists += [keyword.value for keyword in node.keywords if keyword.arg == "labels"]
        found[first.value] = {element.value for labels in lists for element in labels.elts}
    return found


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _base(name: str, metrics: dict) -> str | None:
    if name in metrics:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in metrics:
            return name.removesuffix(suffix)
    return None


def test_the_dashboard_covers_what_operators_watch():
    exprs = " ".join(queries())
    for metric in ("kamicore_rpcs_total", "kamicore_rpc_latency_seconds_bucket",
                   "kamicore_redemptions_total", "kamicore_stock_sellable_codes",
                   "kamicore_expired_holds_total", "kamicore_risk_decisions_total",
                   "kamicore_supplier_attempts_total", "kamicore_supplier_circuit_state"):
        assert metric in exprs, metric


@pytest.mark.parametrize("expr", queries())
def test_every_metric_and_label_a_panel_queries_exists(expr):
    metrics = declared()
    names = re.findall(r"\bkamicore_[a-z_]+", expr)
    assert names, expr
    bases = set()
    for name in names:
        base = _base(name, metrics)
        assert base is not None, f"{name} is not a metric of core/metrics.py"
        bases.add(base)
    labels = set(re.findall(r"(\w+)\s*!?=~?\s*\"", expr))
    for group in re.findall(r"\bby \(([^)]*)\)", expr):
        labels |= {label.strip() for label in group.split(",")}
    known = set().union(*(metrics[base] for base in bases)) | PROMQL_WORDS
    assert labels <= known, f"{sorted(labels - known)} are labels of none of {sorted(bases)}"
