"""What two policies did with the same alerts, side by side: rows, differences, an HTML page.

Per error type and in total: chains, how they ended (remediated, self healed, handed to
people, gave up, open), actions executed by type, hand-offs, attempts, estimated cost and
mean time to resolution. A *difference* is any of those that is not equal between the runs,
except time to resolution, which the two runs measure on a shared, busy machine: it is shown
with its change but counts as a difference only beyond ``TTR_TOLERANCE`` (and 2 s).

The HTML page is self-contained: inline CSS and SVG bar charts, no script, no network, so
it opens offline and can be attached to a change request.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

TOTAL = "(all)"
TTR_TOLERANCE = 0.5
# compared for differences (time to resolution apart): how chains ended, what was done
COMPARED = (
    "chains",
    "remediated",
    "self_healed",
    "hand_offs",
    "gave_up",
    "open",
    "actions_by_type",
    "attempts",
    "cost_usd",
)
RESULTS = {
    "remediated": "remediated",
    "self_healed": "self_healed",
    "manual": "handed_off",
    "gave_up": "gave_up",
    "open": "open",
    "dead_letter": "open",
}


def summarize(chains: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per error type (and ``(all)``): counts, actions by type, cost, attempts, mean TTR (s)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for chain in chains:
        kind = chain.get("error_type") or "(unclassified)"
        groups.setdefault(kind, []).append(chain)
        groups.setdefault(TOTAL, []).append(chain)
    return {kind: _metrics(rows) for kind, rows in sorted(groups.items())}


def _metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    results = Counter(RESULTS.get(r.get("result", ""), "open") for r in rows)
    actions: Counter[str] = Counter()
    for row in rows:
        if row.get("actions_taken"):
            actions[row.get("action") or "?"] += int(row["actions_taken"])
    resolved = [
        r["time_to_resolution_ms"] / 1000
        for r in rows
        if r.get("resolved_by") == "pipemedic" and r.get("time_to_resolution_ms") is not None
    ]
    return {
        "chains": len(rows),
        **{name: results[name] for name in ("remediated", "self_healed", "handed_off")},
        "gave_up": results["gave_up"],
        "open": results["open"],
        "actions": sum(actions.values()),
        "actions_by_type": dict(sorted(actions.items())),
        "hand_offs": results["handed_off"] + results["gave_up"],
        "attempts": sum(int(r.get("attempts") or 0) for r in rows),
        "cost_usd": round(sum(float(r.get("cost_usd") or 0.0) for r in rows), 2),
        "mean_ttr_s": round(sum(resolved) / len(resolved), 1) if resolved else None,
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """{error type: {metric: [A, B]}} for every metric that changed (TTR: beyond noise)."""
    found: dict[str, dict[str, list[Any]]] = {}
    for kind in sorted(set(a) | set(b)):
        if kind == TOTAL:
            continue
        left, right = a.get(kind) or _metrics([]), b.get(kind) or _metrics([])
        changed = {
            name: [left[name], right[name]] for name in COMPARED if left[name] != right[name]
        }
        if _ttr_changed(left["mean_ttr_s"], right["mean_ttr_s"]):
            changed["mean_ttr_s"] = [left["mean_ttr_s"], right["mean_ttr_s"]]
        if changed:
            found[kind] = changed
    return found


def _ttr_changed(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a != b
    return abs(a - b) > max(2.0, TTR_TOLERANCE * max(a, b))


def side_by_side(a: dict[str, Any], b: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Table rows: one per error type (total last), ``A → B`` where B is given."""
    rows = []
    kinds = sorted((set(a) | set(b or {})) - {TOTAL}) + [TOTAL]
    diff = differences(a, b) if b is not None else {}
    for kind in kinds:
        left = a.get(kind) or _metrics([])
        right = (b.get(kind) or _metrics([])) if b is not None else None
        row: dict[str, Any] = {"error_type": kind}
        for name in ("chains", "remediated", "hand_offs", "actions", "attempts", "cost_usd"):
            row[name] = _pair(left[name], right[name] if right else None)
        row["mean_ttr_s"] = _pair(left["mean_ttr_s"], right["mean_ttr_s"] if right else None)
        if b is not None:
            row["differs"] = ", ".join(diff.get(kind, {})) if kind != TOTAL else ""
        rows.append(row)
    return rows


def _pair(a: Any, b: Any) -> str:
    show = lambda v: "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    if b is None or a == b:
        return show(a)
    return f"{show(a)} → {show(b)}"


# --- the HTML page ---------------------------------------------------------------------

CHARTED = (
    ("hand_offs", "Hand-offs to people"),
    ("actions", "Actions executed"),
    ("attempts", "Attempts"),
    ("mean_ttr_s", "Mean time to resolution (s)"),
)
COLOURS = ("#3b6ea5", "#e07b39")


def html_page(report: dict[str, Any]) -> str:
    """One self-contained page: a summary, a chart per metric and the table."""
    policies = report["policies"]
    labels = list(policies)
    summaries = [policies[label]["by_error_type"] for label in labels]
    kinds = sorted({k for s in summaries for k in s} - {TOTAL})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>pipemedic whatif</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "th{background:#f3f3f3}.diff{background:#fff3cd}h2{margin-top:1.5em}</style>",
        "</head><body><h1>pipemedic whatif</h1>",
        "<p>",
        " · ".join(
            f"<b style='color:{COLOURS[i]}'>{html.escape(label)}</b>: "
            f"{html.escape(policies[label]['rules'])}"
            for i, label in enumerate(labels)
        ),
        f"</p><p>{report['alerts']} alerts. Differences: ",
        html.escape(", ".join(report.get("differences") or {}) or "none"),
        "</p>",
    ]
    for metric, title in CHARTED:
        values = [[(s.get(k) or {}).get(metric) or 0 for s in summaries] for k in kinds]
        parts.append(f"<h2>{html.escape(title)}</h2>{bar_chart(kinds, values, labels)}")
    rows = report["table"]
    parts.append("<h2>By error type</h2><table><tr>")
    parts += [f"<th>{html.escape(c)}</th>" for c in rows[0]] if rows else []
    parts.append("</tr>")
    for row in rows:
        marked = " class='diff'" if row.get("differs") else ""
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values())
        parts.append(f"<tr{marked}>{cells}</tr>")
    parts.append("</table></body></html>")
    return "".join(parts)


def bar_chart(
    groups: Sequence[str], values: Sequence[Sequence[float]], series: Sequence[str]
) -> str:
    """Grouped horizontal bars as inline SVG: one group per error type, one bar per policy."""
    bar, gap, label_w, width = 12, 10, 260, 420
    top = max((v for group in values for v in group), default=0) or 1
    height = len(groups) * (bar * len(series) + gap) + gap
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + width + 60}' height='{height}'>"
    ]
    y = gap
    for name, group in zip(groups, values, strict=True):
        middle = y + bar * len(series) / 2 + 4
        out.append(f"<text x='0' y='{middle:.0f}' font-size='12'>{html.escape(name)}</text>")
        for i, value in enumerate(group):
            w = width * value / top
            out.append(
                f"<rect x='{label_w}' y='{y}' width='{w:.1f}' height='{bar - 2}' "
                f"fill='{COLOURS[i % len(COLOURS)]}'><title>{html.escape(series[i])}: "
                f"{value:g}</title></rect>"
                f"<text x='{label_w + w + 4:.1f}' y='{y + bar - 3}' font-size='10'>{value:g}</text>"
            )
            y += bar
        y += gap
    out.append("</svg>")
    return "".join(out)


def build_report(runs: Sequence[Any], alerts: int) -> dict[str, Any]:
    """The whole comparison (``--json``): each policy's run and summary, the table rows and
    the differences per error type."""
    policies = {
        run.label: {
            "rules": run.rules,
            "settled": run.settled,
            "elapsed_s": round(run.elapsed_s, 1),
            "dead_letters": run.dead_letters,
            "by_error_type": summarize(run.chains),
            "chains": run.chains,
        }
        for run in runs
    }
    summaries = [p["by_error_type"] for p in policies.values()]
    b = summaries[1] if len(summaries) > 1 else None
    return {
        "alerts": alerts,
        "policies": policies,
        "table": side_by_side(summaries[0], b),
        "differences": differences(summaries[0], b) if b is not None else {},
    }
