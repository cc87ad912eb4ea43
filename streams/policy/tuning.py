"""What the outcome history says about the rules: proposals with their evidence, and a patch.

``pipemedic tune`` feeds this module rows read from ClickHouse; everything here is a pure
function of those rows, the rule table and the thresholds. Four kinds of proposal:

==========  =================================================================================
manual      a rule whose action rarely works (remediated < ``low_success`` of the chains it
            tried, over at least ``min_chains``): hand those failures to people instead
schedule    an error type whose chains all succeed on the first attempt but wait a long first
            backoff (``long_first_wait_s`` or more, over at least ``min_chains``): shorten it
rule        an unclassified message that recurs (``min_recurring`` times or more, numbers and
            ids aside): a new row (manual until a person says otherwise), with samples
cap         a limit that was hit (daily cost cap, retries exhausted, our own rate limit, the
            circuit breaker), per target: evidence for a setting, not a rules change
==========  =================================================================================

:func:`rules_patch` turns the proposals into the YAML document ``load_rules`` reads (and
``pipemedic whatif --against`` applies on top of the rules in force), so the effect of a
proposal can be seen on recorded alerts before it is adopted.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MESSAGE_MARK = " | message: "  # how the audit trail keeps an unmatched alert's message


@dataclass(frozen=True)
class Thresholds:
    min_chains: int = 10
    low_success: float = 0.2
    long_first_wait_s: int = 30
    shortest_wait_s: int = 5
    min_recurring: int = 3
    samples: int = 3


@dataclass(frozen=True)
class Proposal:
    kind: str  # manual | schedule | rule | cap
    subject: str  # the error type, message pattern or target it is about
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    rules: tuple[Mapping[str, Any], ...] = ()  # entries for the patch's ``rules:``
    schedules: Mapping[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "summary": self.summary,
            "evidence": dict(self.evidence),
            "rules": [dict(r) for r in self.rules],
            "schedules": dict(self.schedules),
        }


def propose(
    chains: Iterable[Mapping[str, Any]],
    unmatched: Iterable[Mapping[str, Any]],
    caps: Iterable[Mapping[str, Any]],
    rule_rows: Sequence[Mapping[str, Any]],
    schedules: Mapping[str, Sequence[int]],
    thresholds: Thresholds = Thresholds(),
) -> list[Proposal]:
    """``chains``: per chain error_type, action, result, attempts; ``unmatched``: source,
    pipeline, detail of the received rows no rule matched; ``caps``: scope, cap, hits,
    sample; ``rule_rows``: ``rules_table_rows`` of the rules in force."""
    chains = list(chains)
    return [
        *_rarely_works(chains, rule_rows, thresholds),
        *_long_first_waits(chains, rule_rows, schedules, thresholds),
        *_recurring_unmatched(unmatched, thresholds),
        *_caps_hit(caps),
    ]


def _rarely_works(
    chains: list[Mapping[str, Any]], rule_rows: Sequence[Mapping[str, Any]], t: Thresholds
) -> list[Proposal]:
    tried: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for chain in chains:
        if chain.get("action") and chain["action"] != "manual":
            tried[(chain.get("error_type", ""), chain["action"])][chain.get("result", "")] += 1
    found = []
    for (error_type, action), results in sorted(tried.items()):
        attempted = results["remediated"] + results["gave_up"]
        if attempted < t.min_chains:
            continue
        rate = results["remediated"] / attempted
        if rate >= t.low_success:
            continue
        rows = [r for r in rule_rows if r["error_type"] == error_type and r["action"] == action]
        found.append(
            Proposal(
                kind="manual",
                subject=error_type,
                summary=(
                    f"{action} fixed {results['remediated']} of {attempted} {error_type} chains "
                    f"({rate:.0%}): hand them to people"
                ),
                evidence={
                    "action": action,
                    "chains_tried": attempted,
                    "remediated": results["remediated"],
                    "gave_up": results["gave_up"],
                    "success_rate": round(rate, 3),
                    "rules": [r["rule"] for r in rows],
                },
                rules=tuple(
                    {
                        "name": r["rule"],
                        "action": "manual",
                        "note": f"tune: {action} fixed {rate:.0%} of {attempted} chains",
                    }
                    for r in rows
                ),
            )
        )
    return found


def _long_first_waits(
    chains: list[Mapping[str, Any]],
    rule_rows: Sequence[Mapping[str, Any]],
    schedules: Mapping[str, Sequence[int]],
    t: Thresholds,
) -> list[Proposal]:
    by_type: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for chain in chains:
        if chain.get("action") and chain["action"] != "manual":
            by_type[chain.get("error_type", "")].append(chain)
    found = []
    for error_type, rows in sorted(by_type.items()):
        first_try = [r for r in rows if r.get("result") == "remediated" and r.get("attempts") == 1]
        if len(rows) < t.min_chains or len(first_try) != len(rows):
            continue
        names = sorted(
            {r["schedule"] for r in rule_rows if r["error_type"] == error_type and r["schedule"]}
        )
        for name in names:
            schedule = list(schedules.get(name, ()))
            if not schedule or schedule[0] < t.long_first_wait_s:
                continue
            shorter = [max(t.shortest_wait_s, schedule[0] // 4), *schedule[1:]]
            found.append(
                Proposal(
                    kind="schedule",
                    subject=error_type,
                    summary=(
                        f"all {len(rows)} {error_type} chains were fixed by the first attempt, "
                        f"each after waiting {schedule[0]}s: start with {shorter[0]}s"
                    ),
                    evidence={
                        "chains": len(rows),
                        "fixed_on_first_attempt": len(first_try),
                        "schedule": name,
                        "first_wait_s": schedule[0],
                    },
                    schedules={name: shorter},
                )
            )
    return found


_VARIABLE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|\d+"
)


def signature(message: str) -> str:
    """A message with its ids and numbers replaced by ``#``: the same error, run after run."""
    return _VARIABLE.sub("#", message.strip())


def _recurring_unmatched(rows: Iterable[Mapping[str, Any]], t: Thresholds) -> list[Proposal]:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        detail = row.get("detail") or ""
        if MESSAGE_MARK not in detail:
            continue
        message = detail.split(MESSAGE_MARK, 1)[1]
        groups[(row.get("source") or "", signature(message))].append(message)
    found = []
    recurring = [(k, v) for k, v in groups.items() if len(v) >= t.min_recurring]
    for number, ((source, pattern), messages) in enumerate(
        sorted(recurring, key=lambda kv: (-len(kv[1]), kv[0])), start=1
    ):
        text = _literal_part(pattern)
        samples = list(dict.fromkeys(messages))[: t.samples]
        match: dict[str, Any] = {"text": re.escape(text)}
        if source:
            match["source"] = source
        found.append(
            Proposal(
                kind="rule",
                subject=pattern,
                summary=f"{len(messages)} alerts matched no rule with this message: add a rule",
                evidence={"alerts": len(messages), "source": source, "samples": samples},
                rules=(
                    {
                        "name": f"tune-unmatched-{number}",
                        "error_type": f"Unclassified{number}",
                        "action": "manual",
                        "risk": "medium",
                        "match": match,
                        "position": "last",
                        "note": "tune: recurring unmatched message; choose its error type and action",
                    },
                ),
            )
        )
    return found


def _literal_part(pattern: str) -> str:
    """The longest stretch of the signature without a variable part: what a rule can match."""
    parts = [p.strip() for p in pattern.split("#")]
    return max(parts, key=len)[:80] or pattern[:80]


CAP_ADVICE = {
    "daily_cost_cap": "actions were held back by the daily cost cap (PIPEMEDIC_DAILY_COST_CAP_USD)",
    "max_retries": "chains gave up after their last attempt (max_retries, PIPEMEDIC_MAX_RETRIES_CAP)",
    "rate_limit": "calls were held back by our own rate limit",
    "breaker": "steps were deferred while the circuit breaker was open (PIPEMEDIC_BREAKER_*)",
}


def _caps_hit(rows: Iterable[Mapping[str, Any]]) -> list[Proposal]:
    found = []
    for row in sorted(rows, key=lambda r: (r.get("cap", ""), r.get("scope", ""))):
        cap, scope, hits = row.get("cap", ""), row.get("scope") or "(any)", int(row.get("hits", 0))
        if not hits or cap not in CAP_ADVICE:
            continue
        found.append(
            Proposal(
                kind="cap",
                subject=f"{cap} @ {scope}",
                summary=f"{hits}× on {scope}: {CAP_ADVICE[cap]}",
                evidence={
                    "cap": cap,
                    "target": scope,
                    "hits": hits,
                    "sample": row.get("sample", ""),
                },
            )
        )
    return found


def rules_patch(proposals: Iterable[Proposal]) -> dict[str, Any]:
    """The proposals' changes as one ``load_rules`` document (caps change no rule)."""
    rules: dict[str, dict[str, Any]] = {}
    schedules: dict[str, list[int]] = {}
    for proposal in proposals:
        for entry in proposal.rules:
            rules.setdefault(entry["name"], {}).update(entry)
        schedules.update({k: list(v) for k, v in proposal.schedules.items()})
    doc: dict[str, Any] = {}
    if schedules:
        doc["schedules"] = schedules
    if rules:
        doc["rules"] = list(rules.values())
    return doc
