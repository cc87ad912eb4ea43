"""The demo's hand-off, made visible: notification channels pointed at the simulator's
receivers, and per chain what people were told.

The demo estate (``data/demo/estate_extras.yaml``) names its channels with
``{simulator}`` where the simulator's address goes; :func:`at_simulator` fills it in and
moves every secret into a file beside the estate (``file:`` references), as a real estate
keeps them out of the YAML. :func:`told_per_chain` reads the delivery rows the notifier
wrote to the outcomes topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from streams.policy.notices import DELIVERY_STATES, NOTIFY, Delivery

SECRET_KEYS = ("routing_key", "bot_token", "webhook_url", "secret")  # teams: its url too


def at_simulator(section: Mapping[str, Any], sim_url: str, secrets_dir: Path) -> dict[str, Any]:
    """``section`` (the estate's ``notifications:``) with ``{simulator}`` replaced by
    ``sim_url`` and secrets written to files under ``secrets_dir``."""
    if not section:
        return {}
    channels = {}
    for name, channel in (section.get("channels") or {}).items():
        spec = {k: _fill(v, sim_url) for k, v in channel.items()}
        secret_keys = (*SECRET_KEYS, "url") if spec.get("type") == "teams" else SECRET_KEYS
        for key in secret_keys:
            if key in spec and not str(spec[key]).startswith(("env:", "file:")):
                path = secrets_dir / f"notify-{name}-{key}"
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                path.write_text(str(spec[key]))
                path.chmod(0o600)
                spec[key] = f"file:{path}"
        channels[name] = spec
    return {**section, "channels": channels}


def _fill(value: Any, sim_url: str) -> Any:
    return value.replace("{simulator}", sim_url) if isinstance(value, str) else value


def told_per_chain(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """chain id -> [{channel, transition, delivered, attempts}], in the order first tried;
    ``delivered`` is the last word on each (channel, transition)."""
    told: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for row in rows:
        if row.get("state") not in DELIVERY_STATES or not row.get("chain_id"):
            continue
        channel = str(row.get("action", "")).removeprefix(f"{NOTIFY}:")
        key = (channel, str(row.get("platform_status", "")))
        entry = told.setdefault(row["chain_id"], {}).setdefault(
            key, {"channel": key[0], "transition": key[1], "delivered": False, "attempts": 0}
        )
        entry["attempts"] += 1
        entry["delivered"] = entry["delivered"] or row["state"] == Delivery.NOTIFIED.value
        if row["state"] == Delivery.NOTIFY_FAILED.value:
            entry["failed"] = row.get("detail", "")
    return {chain: list(entries.values()) for chain, entries in told.items()}
