"""Whether an HTTP webhook request may put its body on the raw topic: key, size, shape.

Checked in this order, each answering with the status the caller sees:

* no key configured → 503: the endpoints fail closed until an operator sets one;
* no presented key matches → 401. A key may come as ``X-Api-Key``, ``Authorization:
  Bearer <key>`` or the ``api_key`` query parameter (Azure action groups cannot set
  headers). Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, every
  presented key is compared, so timing says neither how much of a key matched nor its length;
* body over 256 KB (Azure's common-alert-schema cap) → 413, told by Content-Length before
  reading and enforced again while reading;
* body that is not a JSON object, or whose ``records`` is not a list → 400. What the object
  means is ingest's business: an unknown shape is dead-lettered there, with the payload kept.

Pure: the web view hands in header and query values as strings, the body as bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass

MAX_BODY_BYTES = 256 * 1024
KEY_HEADER = "X-Api-Key"
KEY_QUERY = "api_key"


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


DISABLED = Refusal(503, "webhooks disabled: set PIPEMEDIC_WEBHOOK_API_KEY")
UNAUTHORIZED = Refusal(401, "missing or wrong API key")
TOO_LARGE = Refusal(413, f"body over {MAX_BODY_BYTES} bytes")
NOT_JSON = Refusal(400, "body is not JSON")
NOT_AN_OBJECT = Refusal(400, "body must be a JSON object")
RECORDS_NOT_A_LIST = Refusal(400, "records must be a list")


def presented_keys(
    header_key: str | None, authorization: str | None, query_key: str | None
) -> tuple[str, ...]:
    """Every key the request offers, wherever it put it."""
    keys = [header_key or "", query_key or ""]
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        keys.append(token.strip())
    return tuple(k for k in keys if k)


def check_key(expected: str, presented: Iterable[str]) -> Refusal | None:
    if not expected:
        return DISABLED
    want = _digest(expected)
    matched = False
    for key in presented:  # no early exit: each key costs the same time
        matched |= hmac.compare_digest(want, _digest(key))
    return None if matched else UNAUTHORIZED


def check_declared_size(content_length: int | None, limit: int = MAX_BODY_BYTES) -> Refusal | None:
    """A Content-Length over the cap is refused before a byte of the body is read."""
    return TOO_LARGE if content_length is not None and content_length > limit else None


def check_payload(body: bytes) -> Refusal | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return NOT_JSON
    if not isinstance(payload, dict):
        return NOT_AN_OBJECT
    if "records" in payload and not isinstance(payload["records"], list):
        return RECORDS_NOT_A_LIST
    return None


def _digest(key: str) -> bytes:
    # surrogatepass: header and query values can carry undecodable bytes as surrogates
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
