"""Bounded state: which table keys have outlived the horizon.

Entries are written with an expiry time; the index keeps, per partition, a FIFO of
``(expires_at, key)``. Because every entry of a table lives as long as the same horizon,
the FIFO is in expiry order and the agent only ever looks at its head: a handful of keys per
event, never a scan. An entry refreshed after it was indexed is indexed again; the stale
index line is ignored when the stored value says it is not due. Deletes happen in the
partition they belong to, inside that partition's event, so Faust writes the tombstone to
the right changelog partition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator


class ExpiryIndex:
    def __init__(self) -> None:
        self._queues: dict[int, deque[tuple[int, str]]] = {}
        self._loaded: set[int] = set()

    def add(self, partition: int, expires_at: int, key: str) -> None:
        self._queues.setdefault(partition, deque()).append((expires_at, key))

    def needs_load(self, partition: int) -> bool:
        """True once per partition and process: entries restored from the changelog are not
        indexed yet (see :meth:`load`)."""
        return partition not in self._loaded

    def load(self, partition: int, entries: Iterable[tuple[str, int]]) -> None:
        """Index what a table already holds for ``partition`` (key, expires_at)."""
        self._loaded.add(partition)
        known = sorted(((at, key) for key, at in entries if at), key=lambda item: item[0])
        queue = self._queues.setdefault(partition, deque())
        self._queues[partition] = deque(sorted([*known, *queue], key=lambda item: item[0]))

    def due(self, partition: int, now_ms: int, *, limit: int = 64) -> Iterator[str]:
        """Pop up to ``limit`` keys whose indexed expiry has passed."""
        queue = self._queues.get(partition)
        while queue and limit > 0 and queue[0][0] <= now_ms:
            limit -= 1
            yield queue.popleft()[1]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())


def sweep(
    index: ExpiryIndex,
    partition: int,
    now_ms: int,
    expires_at_of: Callable[[str], int | None],
    delete: Callable[[str], None],
    *,
    limit: int = 64,
) -> int:
    """Delete the due keys of ``partition`` whose stored value agrees they are due."""
    deleted = 0
    for key in index.due(partition, now_ms, limit=limit):
        stored = expires_at_of(key)
        if stored is not None and 0 < stored <= now_ms:
            delete(key)
            deleted += 1
    return deleted
