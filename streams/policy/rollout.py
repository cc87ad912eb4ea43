"""Scoped rollout: which mode - observe, approval, automatic - applies to a failure.

The rules say *what* a failure is and what would fix it; the rollout table says *whether*
pipemedic may do it there. Each row names a scope and a mode; the first row whose every
given field matches decides, and the worker's global ``mode`` applies where none does. A row
with no field at all matches everything (a catch-all, last).

Fields of a row (all optional; several values of one field are alternatives):

* ``targets``: ADF factory names or Databricks workspace ids, shell-style patterns
  (``adf-*-dev``), case-insensitive;
* ``tags``: ``{key: value}`` pairs that the target's estate entry must all carry
  (``env: prod``); a target that is not in the estate has no tags;
* ``pipelines``: pipeline or job names, shell-style patterns, case-insensitive;
* ``sources``, ``error_types``, ``risks``: exact values, as in ``pipemedic rules``.

``observe`` means no platform write on that scope: the chain records what it would have
done (an ``observed`` row) and is handed to people. The reads that decide - enrichment
(``queryPipelineRuns``, ``runs/get``) and nothing else - still happen, since without them
the classification itself would be a guess. ``approval`` holds the action until a person
says yes. Pure: no I/O but reading the YAML document handed in.

Some actions ask first whatever the global mode (:data:`GUARDED_ACTIONS`): running a table's
DDL changes a schema, so ``create_table`` is at least ``approval``; a stricter mode
(``observe``) still wins. Only a row that names the error type itself
(``error_types: [DatabricksTableNotFound]``) may set a looser mode for it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.policy.model import Alert, Classification, Risk, Source

MODES = ("observe", "approval", "automatic")
_STRICTNESS = {"automatic": 0, "approval": 1, "observe": 2}
# action -> the least strict mode it runs in unless a row naming its error type says otherwise
GUARDED_ACTIONS: Mapping[str, str] = {"create_table": "approval"}
_KEYS = frozenset(
    {"name", "mode", "targets", "tags", "pipelines", "sources", "error_types", "risks", "note"}
)


class RolloutError(ValueError):
    """The rollout table is invalid; the message lists every problem found."""


@dataclass(frozen=True)
class RolloutRow:
    name: str
    mode: str
    targets: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    pipelines: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    risks: tuple[str, ...] = ()
    note: str = ""

    def matches(
        self, alert: Alert, classification: Classification, tags: Mapping[str, str]
    ) -> bool:
        scope, pipeline = alert.scope.lower(), alert.pipeline.lower()
        return (
            (not self.targets or any(fnmatch.fnmatchcase(scope, p) for p in self.targets))
            and all(tags.get(key) == value for key, value in self.tags)
            and (
                not self.pipelines or any(fnmatch.fnmatchcase(pipeline, p) for p in self.pipelines)
            )
            and (not self.sources or alert.source in self.sources)
            and (not self.error_types or classification.error_type in self.error_types)
            and (not self.risks or classification.risk in self.risks)
        )

    def describe(self) -> str:
        """The scope in words, for ``pipemedic policy``."""
        parts = []
        for label, values in (
            ("target", self.targets),
            ("pipeline", self.pipelines),
            ("source", self.sources),
            ("error", self.error_types),
            ("risk", self.risks),
        ):
            if values:
                parts.append(f"{label} {' | '.join(values)}")
        parts += [f"{key}={value}" for key, value in self.tags]
        return ", ".join(parts) or "everything"


@dataclass(frozen=True)
class Rollout:
    """The rollout table, the mode where no row matches, and the estate's target tags."""

    rows: tuple[RolloutRow, ...] = ()
    default_mode: str = "automatic"
    target_tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    guarded: Mapping[str, str] = field(default_factory=lambda: dict(GUARDED_ACTIONS))

    def match(self, alert: Alert, classification: Classification) -> RolloutRow | None:
        """The first row that covers this failure, if any."""
        tags = self.target_tags.get(alert.scope.lower(), {})
        return next((r for r in self.rows if r.matches(alert, classification, tags)), None)

    def decide(
        self, alert: Alert, classification: Classification, *, default: str | None = None
    ) -> tuple[str, str]:
        """``(mode, why)``: the mode for this failure and the row that set it, or the global
        mode (``default``, else ``default_mode``) where no row matches."""
        row = self.match(alert, classification)
        if row is None:
            mode, why = default or self.default_mode, "global mode"
        else:
            mode, why = row.mode, f"rollout row {row.name!r}"
        floor = self.guarded.get(classification.action)
        named = row is not None and classification.error_type in row.error_types
        if floor and not named and _STRICTNESS.get(mode, 0) < _STRICTNESS[floor]:
            return floor, f"{classification.action} always asks first"
        return mode, why

    def table_rows(self) -> list[dict[str, Any]]:
        """What ``pipemedic policy`` prints: every row, then the default."""
        rows = [
            {"#": i, "name": r.name, "scope": r.describe(), "mode": r.mode, "note": r.note}
            for i, r in enumerate(self.rows, 1)
        ]
        rows.append(
            {
                "#": len(rows) + 1,
                "name": "(global mode)",
                "scope": "anything no row matched",
                "mode": self.default_mode,
                "note": "PIPEMEDIC_MODE",
            }
        )
        return rows


def parse_rollout(entries: Any, *, origin: str = "rules") -> tuple[RolloutRow, ...]:
    """The ``rollout:`` list of a rules file as rows; every problem is named at once."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise RolloutError(f"{origin}: rollout: expected a list of rows")
    rows: list[RolloutRow] = []
    errors: list[str] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{origin}: rollout[{index}]"
        try:
            row = _row(entry)
        except (TypeError, ValueError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        if row.name in names:
            errors.append(f"{where}: name {row.name!r} is used twice")
        names.add(row.name)
        rows.append(row)
    if errors:
        raise RolloutError("\n".join(errors))
    return tuple(rows)


def _row(entry: Any) -> RolloutRow:
    if not isinstance(entry, Mapping):
        raise ValueError("expected a mapping")
    unknown = set(entry) - _KEYS
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    name, mode = entry.get("name"), entry.get("mode")
    if not isinstance(name, str) or not name:
        raise ValueError("name: required string")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}")
    tags = entry.get("tags") or {}
    if not isinstance(tags, Mapping) or not all(
        isinstance(v, str | int | bool) for v in tags.values()
    ):
        raise ValueError("tags: expected a mapping of key -> value")
    row = RolloutRow(
        name=name,
        mode=mode,
        targets=tuple(p.lower() for p in _strings(entry, "targets")),
        tags=tuple((str(k), _tag(v)) for k, v in tags.items()),
        pipelines=tuple(p.lower() for p in _strings(entry, "pipelines")),
        sources=_strings(entry, "sources", allowed=[s.value for s in Source]),
        error_types=_strings(entry, "error_types"),
        risks=_strings(entry, "risks", allowed=[r.value for r in Risk]),
        note=str(entry.get("note", "")),
    )
    return row


def _strings(
    entry: Mapping[str, Any], key: str, *, allowed: Sequence[str] | None = None
) -> tuple[str, ...]:
    value = entry.get(key)
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{key}: expected a string or a non-empty list of strings")
    if allowed is not None:
        wrong = [v for v in values if v not in allowed]
        if wrong:
            raise ValueError(f"{key}: {', '.join(wrong)} not among {', '.join(allowed)}")
    return tuple(values)


def _tag(value: Any) -> str:
    """Tags compare as text; YAML's ``true`` is ``"true"`` (estate tags are read alike)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def tags_of(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Estate entries' ``tags`` keyed by lower-cased target name, values as text."""
    return {
        name.lower(): {str(k): _tag(v) for k, v in tags.items()} for name, tags in entries.items()
    }
