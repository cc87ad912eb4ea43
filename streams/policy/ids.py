"""Deterministic ids: the same transition always gets the same id, so replays collapse."""

from __future__ import annotations

import hashlib


def event_id(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=10).hexdigest()
