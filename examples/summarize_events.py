#!/usr/bin/env python3
"""Summarise a bq-backfill event stream (JSON Lines) for humans.

--live: read stdin as it arrives, echo the interesting events, then the summary.
FILE:   summarise a saved stream.
"""
import json
import sys


def main() -> int:
    live = "--live" in sys.argv
    paths = [a for a in sys.argv[1:] if not a.startswith("--")]
    stream = open(paths[0]) if paths else sys.stdin
    counts: dict[str, int] = {}
    finished = None
    succeeded = 0
    for line in stream:
        ev = json.loads(line)
        kind = ev["event"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "partition_succeeded":
            succeeded += 1
        if live and (kind in ("run_started", "partition_failed", "retry_scheduled", "run_finished")
                     or (kind == "partition_succeeded" and succeeded % 30 == 1)):
            print("   " + line.rstrip(), flush=True)
        if kind == "run_finished":
            finished = ev
    print("   events: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if finished:
        print(f"   summary: status={finished['status']} succeeded={finished['succeeded']} "
              f"skipped={finished['skipped']} failed={finished['failed']} pending={finished['pending']} "
              f"in {finished['duration_seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
