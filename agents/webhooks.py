"""HTTP ingest on the worker's own web server: alerts POSTed straight onto the raw topic.

``POST /azure-monitor`` and ``POST /databricks-monitor`` take the payloads that otherwise
arrive through Event Hubs, so an Azure action group or a Databricks notification destination
can call pipemedic directly. Both do the same: the key, size and JSON checks of
:mod:`streams.policy.webhook_checks`, then the body, byte for byte, to the raw topic, where
ingest treats it like any other message. ``202`` is answered only once the broker has
acknowledged the record; if it does not within :data:`SEND_TIMEOUT_S` the answer is ``503``
and the caller retries (a duplicate is harmless: dedup keys come from the payload).

Bad input is a 4xx, never a 500. The body is streamed with a cap, never buffered whole.
``GET /health`` is liveness and needs no key. Faust starts the web server right after the
producer, before the consumer and table recovery, so the webhooks may take alerts while the
worker is still recovering: they wait on the broker until ingest gets to them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.web import Request, Response, View

from agents.common import log
from streams.app import Topology
from streams.policy import webhook_checks as checks

# Azure action groups give a webhook 10 s per attempt
SEND_TIMEOUT_S = 8.0
ENQUEUE_FAILED = checks.Refusal(503, "could not enqueue the alert; retry")
UNREADABLE = checks.Refusal(400, "body could not be read")
WEBHOOK_PATHS = ("/azure-monitor", "/databricks-monitor")


def register(topology: Topology) -> None:
    app = topology.app
    api_key = topology.settings.webhook_api_key.get_secret_value()
    if not api_key:
        log.warning("%s refuse every request: PIPEMEDIC_WEBHOOK_API_KEY is not set", WEBHOOK_PATHS)

    class AlertWebhook(View):
        async def post(self, request: Request, **kwargs: Any) -> Response:
            refusal = await self._accept(request)
            if refusal is not None:
                return self.error(refusal.status, refusal.reason)
            return self.json({"accepted": True}, status=202)

        async def _accept(self, request: Any) -> checks.Refusal | None:
            presented = checks.presented_keys(
                request.headers.get(checks.KEY_HEADER),
                request.headers.get("Authorization"),
                request.query.get(checks.KEY_QUERY),
            )
            refusal = checks.check_key(api_key, presented)
            refusal = refusal or checks.check_declared_size(request.content_length)
            if refusal is not None:
                return refusal
            body = await read_capped(request.content, checks.MAX_BODY_BYTES)
            if isinstance(body, checks.Refusal):
                return body
            return checks.check_payload(body) or await enqueue(topology, body)

    for path in WEBHOOK_PATHS:
        name = "webhook_" + path.strip("/").replace("-", "_")
        app.page(path, name=name)(type(name, (AlertWebhook,), {}))

    @app.page("/health", name="health")
    class Health(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            return self.json({"status": "ok"})


async def read_capped(content: Any, limit: int) -> bytes | checks.Refusal:
    """Read at most ``limit`` bytes of a request body (chunked bodies carry no length)."""
    body = bytearray()
    try:
        while chunk := await content.read(limit + 1 - len(body)):
            body += chunk
            if len(body) > limit:
                return checks.TOO_LARGE
    except Exception as exc:  # broken chunking or encoding, a client gone: never a 500
        log.info("webhook body unreadable: %r", exc)
        return UNREADABLE
    return bytes(body)


async def enqueue(topology: Topology, body: bytes) -> checks.Refusal | None:
    """Send to the raw topic and wait for the broker's acknowledgement."""
    try:
        delivery = await topology.raw.send(value=body)
        # asyncio.wait, not wait_for: a late acknowledgement must not be cancelled
        done, _ = await asyncio.wait({asyncio.ensure_future(delivery)}, timeout=SEND_TIMEOUT_S)
        if not done:
            log.warning("webhook: broker did not acknowledge within %ss", SEND_TIMEOUT_S)
            return ENQUEUE_FAILED
        done.pop().result()
    except Exception:
        log.exception("webhook: could not send to %s", topology.raw.get_topic_name())
        return ENQUEUE_FAILED
    return None
