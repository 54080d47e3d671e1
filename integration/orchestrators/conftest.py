"""Fixtures for the orchestrator tests: a real `bq-emulator` process seeded with the demo data, and the
paths of the binaries (`BQ_EMULATOR_BIN`, `BQ_BACKFILL_BIN`, set by `make test-orchestrators`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PROJECT = "demo-project"
LISTENING = re.compile(r"listening on (\S+):(\d+)")


def binary(var: str) -> str:
    path = os.environ.get(var)
    if not path or not os.access(path, os.X_OK):
        pytest.exit(f"{var} is not an executable ({path!r}); hint: run `make test-orchestrators`", returncode=2)
    return path


@dataclass
class Emulator:
    proc: subprocess.Popen
    host: str  # 127.0.0.1:PORT, the value of BIGQUERY_EMULATOR_HOST
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a GoogleSQL query, as strings, through jobs.query."""
        body = json.dumps({"query": sql, "useLegacySql": False}).encode()
        req = urllib.request.Request(
            f"{self.url}/bigquery/v2/projects/{PROJECT}/queries",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = json.loads(resp.read())
        return [[c["v"] for c in row["f"]] for row in out.get("rows", [])]

    def daily_totals(self) -> dict[str, int]:
        """Destination: events per day."""
        rows = self.query(f"SELECT day, SUM(events) AS n FROM `{PROJECT}.analytics.events_daily` GROUP BY day")
        return {r[0]: int(r[1]) for r in rows}

    def raw_totals(self, start: str, end: str) -> dict[str, int]:
        """Source: raw events per day in [start, end)."""
        rows = self.query(
            f"SELECT DATE(event_ts) AS day, COUNT(*) AS n FROM `{PROJECT}.raw.events` "
            f"WHERE event_ts >= TIMESTAMP('{start}') AND event_ts < TIMESTAMP('{end}') GROUP BY day"
        )
        return {r[0]: int(r[1]) for r in rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def emulator():
    """A fresh emulator with January 2024 of demo events and an empty `events_daily`."""
    exe = binary("BQ_EMULATOR_BIN")
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(_free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    emu_log: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def drain() -> None:
        for line in proc.stderr:
            emu_log.append(line.rstrip("\n"))
            m = LISTENING.search(line)
            if m and not found:
                found.append(f"{m.group(1)}:{m.group(2)}")
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(30) or not found:
        proc.kill()
        pytest.fail("the emulator did not start:\n" + "\n".join(emu_log))
    emu = Emulator(proc, found[0], emu_log)
    subprocess.run(
        [exe, "seed-demo", "--url", emu.url, "--start", "2024-01-01", "--end", "2024-02-01"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    yield emu
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def workdir():
    """A temporary directory laid out like a user's repository: `tasks/events_daily.json` (examples/tasks/: the
    descriptor with its range left open, for the orchestrator to fill in) and `dist/bq-backfill`."""
    with tempfile.TemporaryDirectory(prefix="bq-orch-") as d:
        root = Path(d)
        (root / "tasks").mkdir()
        (root / "dist").mkdir()
        shutil.copy(EXAMPLES / "tasks" / "events_daily.json", root / "tasks" / "events_daily.json")
        os.symlink(binary("BQ_BACKFILL_BIN"), root / "dist" / "bq-backfill")
        yield root
