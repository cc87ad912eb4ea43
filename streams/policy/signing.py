"""HMAC-SHA256 signatures: our outbound webhooks, and the approval links people click.

Webhooks follow Standard Webhooks 1.0: the signed content is ``{id}.{timestamp}.{body}``
(the exact bytes sent), carried as ``webhook-id``, ``webhook-timestamp`` (unix seconds) and
``webhook-signature: v1,<base64>``. The timestamp is signed with the body, so a receiver can
refuse a replay past its tolerance, and the id stays the same across our retries, so it can
drop a duplicate.

An approval link names a chain, a decision and an expiry, and signs the three together: a
link cannot be turned from ``reject`` into ``approve``, moved to another chain or extended.
Checks compare in constant time. No clock here: ``now`` is a parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote, urlencode

TOLERANCE_S = 300  # a signed webhook older (or newer) than this is a replay
DECISIONS = ("approve", "reject")


def _mac(secret: bytes, content: bytes) -> bytes:
    return hmac.new(secret, content, hashlib.sha256).digest()


def webhook_headers(
    secret: bytes, message_id: str, timestamp_s: int, body: bytes
) -> dict[str, str]:
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    signature = base64.b64encode(_mac(secret, signed)).decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": f"v1,{signature}",
    }


def verify_webhook(
    secret: bytes, headers: Mapping[str, str], body: bytes, *, now_s: float
) -> str | None:
    """None when ``headers`` sign ``body`` within the tolerance; else what is wrong."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    if not message_id or not stamp.isdigit():
        return "missing webhook-id or webhook-timestamp"
    if abs(now_s - int(stamp)) > TOLERANCE_S:
        return "timestamp outside the tolerance"
    expected = webhook_headers(secret, message_id, int(stamp), body)["webhook-signature"]
    offered = lowered.get("webhook-signature", "").split()
    if not any(hmac.compare_digest(expected, sig) for sig in offered):
        return "bad signature"
    return None


# --- approval links ------------------------------------------------------------------


def approval_signature(secret: bytes, chain_id: str, decision: str, expires_s: int) -> str:
    content = f"approval\n{chain_id}\n{decision}\n{expires_s}".encode()
    return base64.urlsafe_b64encode(_mac(secret, content)).decode().rstrip("=")


def approval_query(secret: bytes, chain_id: str, decision: str, expires_s: int) -> dict[str, str]:
    return {
        "decision": decision,
        "exp": str(expires_s),
        "sig": approval_signature(secret, chain_id, decision, expires_s),
    }


def check_approval(
    secret: bytes, chain_id: str, decision: str, expires: str, signature: str, *, now_s: float
) -> str | None:
    """None for a genuine, unexpired link; else why it is refused (``tampered``,
    ``expired``)."""
    if not secret:
        return "approval links are not configured"
    if decision not in DECISIONS or not expires.isdigit() or not signature:
        return "tampered"
    expected = approval_signature(secret, chain_id, decision, int(expires))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "tampered"
    if now_s >= int(expires):
        return "expired"
    return None


def approval_links(secret: bytes, base_url: str, chain_id: str, expires_s: int) -> dict[str, str]:
    """decision -> the signed link to its confirmation page on the worker."""
    where = f"{base_url.rstrip('/')}/approvals/{quote(chain_id, safe='')}"
    return {
        decision: f"{where}?{urlencode(approval_query(secret, chain_id, decision, expires_s))}"
        for decision in DECISIONS
    }
