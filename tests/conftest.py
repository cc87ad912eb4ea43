"""Suite-wide: the long files first.

The suite runs in two processes, a test file at a time each (``--dist loadfile``), handed out
in collection order. Collected as the folders sort, the integration files (20-50 s each,
most of the suite) came in the middle and one of them could run alone at the end while the
other process sat idle; started first, the many short files fill the end instead.
"""

from __future__ import annotations

from typing import Any


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    items.sort(key=lambda item: 0 if "/integration/" in str(item.path) else 1)  # stable
