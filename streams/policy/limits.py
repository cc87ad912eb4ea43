"""The limit tables of a rules file: ``caps:`` and ``storms:`` (what they mean:
:mod:`streams.policy.admission`). Parsed strictly: a mistake names its place (``caps[1].per``)
and nothing is half-applied. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_CAP_SCOPES = ("target", "factory")
_STORM_DISTINCT = ("target", "factory")
_CAP_KEYS = frozenset({"name", "per", "limit", "window_s", "then"})
_STORM_KEYS = frozenset({"name", "scope", "distinct", "more_than", "within_s"})


class AdmissionError(ValueError):
    """The caps or storms table is invalid; the message lists every problem found."""


@dataclass(frozen=True)
class Cap:
    per: str  # target | factory
    limit: int
    window_s: int
    then: str = "defer"  # defer | manual
    name: str = ""

    def describe(self) -> str:
        return f"at most {self.limit} actions per {self.per} within {self.window_s}s"

    def label(self) -> str:
        return self.name or f"{self.limit} per {self.per} per {self.window_s}s"


@dataclass(frozen=True)
class StormRule:
    scope: str  # factory | error_type | estate | tag:<key>
    distinct: str  # target | factory
    more_than: int
    within_s: int
    name: str = ""

    def describe(self) -> str:
        return (
            f"more than {self.more_than} {self.distinct}s failing within {self.within_s}s "
            f"per {self.scope}"
        )

    def label(self) -> str:
        return self.name or self.describe()


def parse_caps(doc: Any, *, origin: str = "caps") -> tuple[Cap, ...]:
    problems: list[str] = []
    caps = []
    for where, row in _known_rows(doc, origin, _CAP_KEYS, problems):
        per, then = row.get("per"), row.get("then", "defer")
        limit, window = row.get("limit"), row.get("window_s")
        if per not in _CAP_SCOPES:
            problems.append(f"{where}.per: expected one of {list(_CAP_SCOPES)}, got {per!r}")
        if then not in ("defer", "manual"):
            problems.append(f"{where}.then: expected defer or manual, got {then!r}")
        _need_positive(problems, where, limit=limit, window_s=window)
        if not problems:
            caps.append(Cap(per, int(limit), int(window), then, str(row.get("name", ""))))
    if problems:
        raise AdmissionError("; ".join(problems))
    return tuple(caps)


def parse_storms(doc: Any, *, origin: str = "storms") -> tuple[StormRule, ...]:
    problems: list[str] = []
    storms = []
    for where, row in _known_rows(doc, origin, _STORM_KEYS, problems):
        scope, distinct = row.get("scope"), row.get("distinct", "target")
        more_than, within = row.get("more_than"), row.get("within_s")
        if not (
            scope in ("factory", "error_type", "estate")
            or (isinstance(scope, str) and scope.startswith("tag:") and len(scope) > 4)
        ):
            problems.append(
                f"{where}.scope: expected factory, error_type, estate or tag:<key>, got {scope!r}"
            )
        if distinct not in _STORM_DISTINCT:
            problems.append(f"{where}.distinct: expected target or factory, got {distinct!r}")
        _need_positive(problems, where, more_than=more_than, within_s=within)
        if not problems:
            storms.append(
                StormRule(scope, distinct, int(more_than), int(within), str(row.get("name", "")))
            )
    if problems:
        raise AdmissionError("; ".join(problems))
    return tuple(storms)


def _known_rows(
    doc: Any, origin: str, keys: frozenset[str], problems: list[str]
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each row with its place (``caps[2]``); a row with a key nobody knows is a problem."""
    if doc is None:
        return
    if not isinstance(doc, list) or not all(isinstance(r, Mapping) for r in doc):
        raise AdmissionError(f"{origin}: expected a list of mappings")
    for i, row in enumerate(doc):
        where = f"{origin}[{i}]"
        unknown = set(row) - keys
        if unknown:
            problems.append(f"{where}: unknown key(s) {sorted(unknown)}")
        else:
            yield where, row


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _need_positive(problems: list[str], where: str, **values: Any) -> None:
    for name, value in values.items():
        if not _positive_int(value):
            problems.append(f"{where}.{name}: expected a positive integer, got {value!r}")
