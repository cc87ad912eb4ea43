"""Memory of the dedup state under a stream of distinct run ids, expiry on vs off.

Drives exactly what the dedup agent does per alert — ``decide`` the entry, write it to the
table, index its expiry, sweep the partition's due keys — on a dict, which is what Faust's
in-memory table store is. The clock advances 1 ms per alert, so with the default horizon of
50 s about 50,000 run ids are live at any time. Prints the table size and the process RSS
every 100,000 alerts, then ``state_mb_expiry_on``, ``state_mb_expiry_off`` and
``growth_last_half_pct`` (how much the expiring state grew over the second half: flat ≈ 0).

    python bench/dedup_memory.py [--alerts 1000000] [--horizon-s 50] [--partitions 4]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time

from agents.common import TableExpiry
from streams.policy.dedup import DedupEntry, decide, dedup_key
from streams.policy.model import Alert, Signal


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def run(
    alerts: int, horizon_ms: int, partitions: int, expire: bool
) -> list[tuple[int, int, float]]:
    table: dict[str, dict] = {}
    expiry = TableExpiry(table, partitions, lambda v: v["expires_at"])
    samples = []
    start = time.monotonic()
    for i in range(alerts):
        now = 1_700_000_000_000 + i  # 1 ms per alert
        alert = Alert(
            alert_id=f"a{i}",
            source="adf",
            kind="pipeline_run",
            scope="factory",
            run_id=f"run-{i:09d}",
            signal=Signal.FAILURE.value,
        )
        key = dedup_key(alert)
        partition = expiry.partition_of(key)
        if expire:
            expiry.sweep(partition, now)
        stored = table.get(key)
        decision = decide(
            DedupEntry.from_dict(stored) if stored else None,
            alert,
            now_ms=now,
            horizon_ms=horizon_ms,
        )
        table[key] = decision.entry.to_dict()
        if expire:
            expiry.remember(partition, key, table[key])
        if (i + 1) % 100_000 == 0:
            gc.collect()
            samples.append((i + 1, len(table), rss_mb()))
            print(
                f"  {'on ' if expire else 'off'} {i + 1:>9,} alerts: {len(table):>9,} keys, "
                f"rss {samples[-1][2]:7.1f} MB, {time.monotonic() - start:5.1f}s",
                file=sys.stderr,
            )
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--horizon-s", type=float, default=50.0)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    horizon_ms = int(args.horizon_s * 1000)

    base = rss_mb()
    on = run(args.alerts, horizon_ms, args.partitions, expire=True)
    on_mb = on[-1][2] - base
    half = on[len(on) // 2 - 1][2] - base if len(on) > 1 else on_mb
    growth = 100.0 * (on_mb - half) / half if half > 0 else 0.0
    live_keys = on[-1][1]
    # the baseline runs second so the expiring run's RSS is not inflated by freed pages
    off = run(args.alerts, horizon_ms, args.partitions, expire=False)
    off_mb = off[-1][2] - on[-1][2]
    print(f"alerts: {args.alerts}")
    print(f"live_keys_expiry_on: {live_keys}")
    print(f"state_mb_expiry_on: {on_mb:.1f}")
    print(f"state_mb_expiry_off: {off_mb:.1f}")
    print(f"growth_last_half_pct: {growth:.1f}")
    print(f"ratio_off_vs_on: {off_mb / on_mb if on_mb > 0 else float('inf'):.1f}")


if __name__ == "__main__":
    main()
