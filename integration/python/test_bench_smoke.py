"""`make bench`'s driver on a tiny scenario: both programs back-fill 3 day partitions through the same
emulator counters, and what it measures is consistent (a broken driver fails here, not at bench time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_driver_measures_both_programs_on_three_partitions():
    bin_dir = Path(os.environ["BQ_EMULATOR_BIN"]).parent
    out = subprocess.run(
        [sys.executable, str(ROOT / "integration/bench/bench.py"), "--bin-dir", str(bin_dir),
         "--python", sys.executable, "--smoke"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    tool, loop = json.loads(out.stdout)

    assert tool["program"] == "bq-backfill" and loop["program"] == "Python loop"
    for row in (tool, loop):
        assert row["partitions"] == 3
        assert 0 < row["job_s"] < row["wall"]
        assert 0 < row["overhead_ms"] < row["wall"] * 1000 / 3
        assert row["rss_mb"] > 1
        assert row["calls"] == sum(row["methods"].values()) / 3
    # The loop: per partition a done-query, the partition's query job and the DML checkpoint job.
    assert loop["methods"]["jobs.insert"] == 9
    # The tool: one query job per partition, its audit rows by insertAll, timed partition by partition.
    assert tool["methods"]["jobs.insert"] >= 3
    assert tool["methods"]["tabledata.insertAll"] >= 6
    assert len(tool["partition_walls"]) == 3
