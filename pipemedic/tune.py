"""``pipemedic tune``: read the outcome history in ClickHouse, propose rule changes, write a patch.

The reading is here (three queries over the audit trail: the ``chains`` view, the received
rows no rule matched, the rows that tell of a limit being hit); the deciding is
:mod:`streams.policy.tuning`. The patch is the YAML ``load_rules`` reads, with each
proposal's evidence as comments above it, for a person to review and to try with
``pipemedic whatif --alerts ... --against PATCH`` before adopting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipemedic.reporting import clickhouse_config
from streams.adapters.clickhouse import chain_summaries, open_store
from streams.policy.tuning import Proposal, Thresholds, propose, rules_patch
from streams.settings import Settings

_SINCE = "fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')"

UNMATCHED_ROWS = f"""
SELECT source, pipeline, detail
FROM outcomes FINAL
WHERE state IN ('received', 'duplicate') AND error_type = 'Unknown'
  AND position(detail, ' | message: ') > 0 AND at >= {_SINCE}
ORDER BY at
"""

CAPS_HIT = f"""
SELECT scope, cap, count() AS hits, any(detail) AS sample
FROM
(
    SELECT scope, detail,
           multiIf(position(detail, 'daily cost cap') > 0, 'daily_cost_cap',
                   state = 'gave_up', 'max_retries',
                   position(detail, 'by our rate limit') > 0, 'rate_limit',
                   position(detail, 'circuit open for') > 0, 'breaker',
                   '') AS cap
    FROM outcomes FINAL
    WHERE at >= {_SINCE}
)
WHERE cap != ''
GROUP BY scope, cap
ORDER BY cap, scope
"""


def read_history(settings: Settings, since_ms: int) -> tuple[list[Any], list[Any], list[Any]]:
    """(chains, unmatched received rows, caps hit) since ``since_ms``."""
    store = open_store(clickhouse_config(settings))
    try:
        store.ensure_schema()
        params = {"since_ms": since_ms}
        return (
            chain_summaries(store, since_ms),
            store.query(UNMATCHED_ROWS, params),
            store.query(CAPS_HIT, params),
        )
    finally:
        store.close()


def tune(settings: Settings, since_ms: int, thresholds: Thresholds | None = None) -> list[Proposal]:
    """The proposals the history since ``since_ms`` supports, for the rules in force."""
    from pipemedic.worker import load_rulebook
    from streams.policy.rules import rules_table_rows

    rules, schedules = load_rulebook(settings.rules_file)
    chains, unmatched, caps = read_history(settings, since_ms)
    rows = rules_table_rows(rules, schedules)
    return propose(chains, unmatched, caps, rows, schedules, thresholds or Thresholds())


def patch_text(proposals: list[Proposal], *, since: str) -> str:
    """The rules patch as YAML, each proposal's evidence in a comment block on top."""
    lines = [
        f"# pipemedic tune --since {since}: proposed rule changes, with their evidence.",
        "# Review, then try them: pipemedic whatif --alerts FILE.jsonl --against THIS_FILE",
    ]
    for proposal in proposals:
        lines.append(f"# - [{proposal.kind}] {proposal.subject}: {proposal.summary}")
        for key, value in proposal.evidence.items():
            lines.append(f"#     {key}: {value}")
    doc = rules_patch(proposals)
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True) if doc else "{}\n"
    return "\n".join(lines) + "\n" + body


def write_patch(path: Path, proposals: list[Proposal], *, since: str) -> None:
    Path(path).write_text(patch_text(proposals, since=since), encoding="utf-8")
