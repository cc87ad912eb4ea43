"""``pipemedic`` command line: demo, worker, rules, report, topics, send, simulator."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# wide enough for the report when piped (rich assumes 80 columns without a terminal)
console = Console(stderr=False, width=None if sys.stdout.isatty() else 140)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipemedic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on the embedded stack and report")
    demo.add_argument("--alerts", type=Path, help="JSONL file: one raw topic message per line")
    demo.add_argument("--world", type=Path, help="platform simulator world file (YAML/JSON)")
    demo.add_argument("--json", action="store_true", help="print a machine-readable report")
    demo.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds"
    )
    demo.add_argument("--keep", action="store_true", help="keep the run's data folder")

    sub.add_parser("worker", help="run a worker (settings from PIPEMEDIC_* variables)")

    rules = sub.add_parser("rules", help="list the classification rule table")
    rules.add_argument("--file", type=Path, help="rules file with overrides")
    rules.add_argument("--json", action="store_true")

    report = sub.add_parser("report", help="the remediation report from ClickHouse")
    report.add_argument("--json", action="store_true")

    topics = sub.add_parser("topics", help="create every topic with its planned partition count")
    topics.add_argument("--list", action="store_true", help="only print the planned topics")

    send = sub.add_parser("send", help="send a JSONL file of raw alerts to the raw topic")
    send.add_argument("file", type=Path)

    approve = sub.add_parser("approve", help="approve (or --reject) the action a chain waits on")
    approve.add_argument("chain_id")
    approve.add_argument("--reject", action="store_true")
    approve.add_argument("--by", default=os.environ.get("USER", "someone"), help="who decides")
    approve.add_argument("--reason", default="")

    sim = sub.add_parser("simulator", help="serve the ADF/Databricks simulator on loopback")
    sim.add_argument("--world", type=Path, required=True)
    sim.add_argument("--port", type=int, default=0)

    args = parser.parse_args(argv)
    return COMMANDS[args.command](args)


def _settings() -> Any:
    from streams.settings import Settings

    return Settings()


def cmd_demo(args: argparse.Namespace) -> int:
    from pipemedic.demo import run_demo

    result = run_demo(
        alerts=args.alerts,
        world=args.world,
        timeout_s=args.timeout,
        keep=args.keep,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(result.as_json(), indent=2, sort_keys=True))
    else:
        print_report(
            result.by_error_type, result.kpis, title=f"pipemedic demo — {result.summary()}"
        )
    return 0 if result.complete else 1


def cmd_worker(args: argparse.Namespace) -> int:
    from pipemedic.worker import run_worker

    run_worker(_settings())
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from pipemedic.worker import load_rulebook
    from streams.policy.rules import rules_table_rows

    rows = rules_table_rows(*load_rulebook(args.file))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    # the note and schedule name are in --json; the table keeps what a reader scans for
    shown = [{k: v for k, v in row.items() if k not in ("note", "schedule")} for row in rows]
    print_rows("pipemedic rules (first match wins)", shown)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipemedic.reporting import read_report

    settings = _settings()
    by_type, kpis, chains = read_report(settings)
    if args.json:
        print(
            json.dumps(
                {"by_error_type": by_type, "kpis": kpis, "chains": chains}, indent=2, default=str
            )
        )
    else:
        print_report(by_type, kpis, title="pipemedic report")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from pipemedic.embedded import create_topics
    from pipemedic.worker import planned_topics

    settings = _settings()
    names = planned_topics(settings)
    if args.list:
        print("\n".join(names))
        return 0
    bootstrap = settings.broker_url.removeprefix("kafka://")
    created = asyncio.run(create_topics(bootstrap, names, settings.partitions))
    print(f"{len(created)} created, {len(names) - len(created)} already there")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    import time

    from pipemedic.runtime import produce_raw
    from pipemedic.stack import relative_times
    from streams.policy.routing import RAW

    settings = _settings()
    now = time.time()
    lines = [
        relative_times(line.encode(), now)
        for line in args.file.read_text().splitlines()
        if line.strip()
    ]
    sent = asyncio.run(produce_raw(settings.broker_url.removeprefix("kafka://"), RAW, lines))
    print(f"sent {sent} messages to {RAW}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from pipemedic.runtime import send_decision

    settings = _settings()
    bootstrap = settings.broker_url.removeprefix("kafka://")
    approve = not args.reject
    asyncio.run(
        send_decision(bootstrap, args.chain_id, approve=approve, by=args.by, reason=args.reason)
    )
    print(f"{'approved' if approve else 'rejected'}: {args.chain_id}")
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    from pipemedic.simulator.__main__ import main as simulator_main

    return simulator_main(["--world", str(args.world), "--port", str(args.port)])


COMMANDS = {
    "demo": cmd_demo,
    "worker": cmd_worker,
    "rules": cmd_rules,
    "report": cmd_report,
    "topics": cmd_topics,
    "send": cmd_send,
    "approve": cmd_approve,
    "simulator": cmd_simulator,
}


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title, show_lines=False)
    if not rows:
        console.print(f"{title}: nothing yet")
        return
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    console.print(table)


def print_report(by_type: list[dict[str, Any]], kpis: dict[str, Any], *, title: str) -> None:
    print_rows(
        title, [row for row in by_type if any(v for k, v in row.items() if k != "error_type")]
    )
    if kpis:
        print_rows("KPIs", [{"metric": k, "value": v} for k, v in kpis.items()])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
