"""What an approval link shows: a confirmation page, or why the link is refused.

A chat client fetches every URL in a message to build a preview, so a GET never decides:
it shows the chain and a button that POSTs the same signed query back. The POST decides.
Refusals say plainly what happened (tampered, expired, already decided) and change nothing.
Pages carry ``Cache-Control: no-store``, ``Referrer-Policy: no-referrer`` and
``X-Robots-Tag: noindex`` (:data:`HEADERS`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Type": "text/html; charset=utf-8",
}

# why a link is refused -> HTTP status and what the person reads
REFUSALS: Mapping[str, tuple[int, str]] = {
    "tampered": (
        403,
        "This approval link is not valid: it was changed or not issued by pipemedic.",
    ),
    "expired": (410, "This approval link has expired. Nothing was done; the chain is with people."),
    "decided": (409, "This approval was already decided. Nothing more was done."),
    "not configured": (404, "Approval links are not configured on this worker."),
}


@dataclass(frozen=True)
class Page:
    status: int
    body: str


def refusal(reason: str) -> Page:
    status, text = REFUSALS.get(reason, (403, reason))
    return _page(status, "Not done", text)


def confirmation(chain_id: str, decision: str, query: Mapping[str, str], what: str) -> Page:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in query.items()
    )
    text = (
        f"<p>Chain <code>{html.escape(chain_id)}</code>{html.escape(what)}</p>"
        f'<form method="post">{hidden}<button type="submit">Confirm: '
        f"{html.escape(decision)}</button></form>"
    )
    return Page(200, _html(f"{decision.capitalize()}?", text))


def decided(chain_id: str, decision: str) -> Page:
    return _page(202, "Done", f"{decision.capitalize()} recorded for chain {chain_id}.")


def _page(status: int, title: str, text: str) -> Page:
    return Page(status, _html(title, f"<p>{html.escape(text)}</p>"))


def _html(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>pipemedic: {html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
