"""Approval links on the worker's web port: ``/approvals/<chain>?decision=&exp=&sig=``.

GET shows a confirmation page and changes nothing, because chat clients fetch every URL in
a message for its preview; the page's button POSTs the same signed query, and the POST
decides by sending the same APPROVED/REJECTED chain event as ``pipemedic approve``. The
chains policy applies a decision only to a chain that still waits, so a double click, a
link racing the CLI or a redelivery is applied once. A link that was tampered with, has
expired, or whose chain was decided already is refused with a page saying so (4xx),
nothing happens, and the refusal is an outcome row (``approval_refused``).
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from agents.common import log
from agents.outbox import Outbox
from streams.app import Topology
from streams.policy import approval_pages as pages
from streams.policy.ids import event_id
from streams.policy.model import Alert, ChainEvent, ChainEventKind, ChainState, Outcome
from streams.policy.notices import APPROVAL_REFUSED
from streams.policy.signing import check_approval

BY_LINK = "by approval link"


def register(topology: Topology) -> None:
    app = topology.app
    secret = topology.settings.approval_secret.get_secret_value().encode()
    clock = topology.clock

    def refuse(chain_id: str, decision: str, reason: str) -> Outcome:
        now = clock.now_ms()
        return Outcome(
            event_id=event_id(chain_id, APPROVAL_REFUSED, decision, reason, now // 60_000),
            at=now,
            chain_id=chain_id,
            dedup_key="",
            state=APPROVAL_REFUSED,
            detail=f"{reason}: {decision or 'no decision'} link",
        )

    async def judge(request: Any, params: Any) -> tuple[str, str, pages.Page | None]:
        chain_id = request.match_info["chain_id"]
        decision = str(params.get("decision", ""))
        why = check_approval(
            secret,
            chain_id,
            decision,
            str(params.get("exp", "")),
            str(params.get("sig", "")),
            now_s=clock.now_ms() / 1000,
        )
        if why is None:
            chain = topology.chains.get(chain_id)  # known here when this worker owns it
            if chain and chain.get("state") != ChainState.AWAITING_APPROVAL.value:
                why = "decided"  # a link used again after the decision
        if why is None:
            return chain_id, decision, None
        if secret:
            outbox = Outbox(topology)
            outbox.add_outcomes((refuse(chain_id, decision, why),))
            await outbox.flush()
        log.info("approval link refused for %s: %s", chain_id, why)
        return chain_id, decision, pages.refusal("not configured" if not secret else why)

    class Approval(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            chain_id, decision, refused = await judge(request, request.query)
            if refused is not None:
                return self._page(refused)
            query = {k: request.query[k] for k in ("decision", "exp", "sig")}
            chain = topology.chains.get(chain_id) or {}
            what = f" waits on {chain['action']}." if chain.get("action") else "."
            return self._page(pages.confirmation(chain_id, decision, query, what))

        async def post(self, request: Request, **kwargs: Any) -> Response:
            form = await request.post()
            params = {
                k: form.get(k) or request.query.get(k, "") for k in ("decision", "exp", "sig")
            }
            chain_id, decision, refused = await judge(request, params)
            if refused is not None:
                return self._page(refused)
            kind = ChainEventKind.APPROVED if decision == "approve" else ChainEventKind.REJECTED
            outbox = Outbox(topology)
            outbox.add_chain_event(
                ChainEvent(
                    kind=kind.value,
                    chain_id=chain_id,
                    dedup_key="",
                    at=clock.now_ms(),
                    alert=Alert(alert_id=f"decision:{chain_id}", source="", kind=""),
                    detail=BY_LINK,
                )
            )
            await outbox.flush()
            return self._page(pages.decided(chain_id, decision))

        def _page(self, page: pages.Page) -> Response:
            headers = {k: v for k, v in pages.HEADERS.items() if k != "Content-Type"}
            return self.html(page.body, status=page.status, headers=headers)

    app.page("/approvals/{chain_id}", name="approval")(Approval)
