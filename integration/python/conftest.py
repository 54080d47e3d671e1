"""Fixtures for the conformance run: a real `bq-emulator` process driven by the official BigQuery client.

The emulator binary comes from `BQ_EMULATOR_BIN` (the Makefile passes target/debug/bq-emulator). Each emulator
gets a free loopback port and a temporary `--gcs-root`, so `gs://bucket/path/file` is the file
`<gcs-root>/bucket/path/file`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

PROJECT = "conformance-project"
STARTUP_TIMEOUT_S = 30.0
LISTENING = re.compile(r"listening on (\S+):(\d+)")

# A cancellable job has to stay unfinished long enough for the test to cancel it.
SLOW_JOB_DELAY_MS = 60_000


@dataclass
class Emulator:
    """One running emulator process and what a test needs to reach it."""

    proc: subprocess.Popen
    base_url: str
    gcs_root: Path
    log: list[str] = field(default_factory=list)

    def control(self, path: str) -> dict:
        """GETs a `/_emulator/...` control endpoint and decodes its JSON."""
        with urllib.request.urlopen(f"{self.base_url}/_emulator/{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def client(self) -> bigquery.Client:
        return bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.base_url},
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(extra_args: list[str]) -> Emulator:
    binary = os.environ.get("BQ_EMULATOR_BIN")
    if not binary:
        pytest.exit("BQ_EMULATOR_BIN is not set; hint: run `make test-python`", returncode=2)
    if not os.access(binary, os.X_OK):
        pytest.exit(f"BQ_EMULATOR_BIN={binary} is not an executable; hint: cargo build -p bq-emulator", returncode=2)
    gcs_root = Path(tempfile.mkdtemp(prefix="bq-conformance-gcs-"))
    cmd = [binary, "serve", "--port", str(_free_port()), "--gcs-root", str(gcs_root), *extra_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    ready = threading.Event()
    address: list[str] = []

    # Drains stderr for the whole life of the process so the pipe never fills up and blocks the emulator.
    def drain() -> None:
        for line in proc.stderr:
            log.append(line.rstrip("\n"))
            if not ready.is_set() and (m := LISTENING.search(line)):
                address.append(f"http://{m.group(1)}:{m.group(2)}")
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    ready.wait(STARTUP_TIMEOUT_S)
    if not address:
        proc.kill()
        proc.wait()
        tail = "\n".join(log[-20:])
        state = "exited" if time.monotonic() < deadline else f"not ready after {STARTUP_TIMEOUT_S:.0f} s"
        pytest.fail(f"emulator {state} without a `listening on` line: {' '.join(cmd)}\n{tail}", pytrace=False)
    return Emulator(proc=proc, base_url=address[0], gcs_root=gcs_root, log=log)


def _stop(emu: Emulator) -> None:
    emu.proc.terminate()
    try:
        emu.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        emu.proc.kill()
        emu.proc.wait()
    shutil.rmtree(emu.gcs_root, ignore_errors=True)


@pytest.fixture(scope="session")
def emulator():
    """The shared emulator; every test works in its own dataset, so tests stay independent."""
    emu = _start([])
    previous = os.environ.get("BIGQUERY_EMULATOR_HOST")
    # The client uses this variable verbatim as its base URL (scheme included), see
    # google/cloud/bigquery/_helpers.py:_get_bigquery_host; clients below also pass api_endpoint explicitly.
    os.environ["BIGQUERY_EMULATOR_HOST"] = emu.base_url
    yield emu
    if previous is None:
        os.environ.pop("BIGQUERY_EMULATOR_HOST", None)
    else:
        os.environ["BIGQUERY_EMULATOR_HOST"] = previous
    _stop(emu)


@pytest.fixture(scope="session")
def client(emulator) -> bigquery.Client:
    return emulator.client()


@pytest.fixture(scope="session")
def slow_emulator():
    """A second emulator whose jobs stay unfinished for a minute, so they can be cancelled."""
    emu = _start(["--job-delay-ms", str(SLOW_JOB_DELAY_MS)])
    yield emu
    _stop(emu)


_dataset_seq = itertools.count(1)


def _new_dataset(client: bigquery.Client, request) -> bigquery.Dataset:
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    return client.create_dataset(bigquery.Dataset(f"{client.project}.{name}_{next(_dataset_seq)}"))


@pytest.fixture
def dataset(client, request) -> bigquery.Dataset:
    """A fresh dataset named after the test."""
    return _new_dataset(client, request)


@pytest.fixture
def slow_client(slow_emulator) -> bigquery.Client:
    return slow_emulator.client()


@pytest.fixture
def slow_dataset(slow_client, request) -> bigquery.Dataset:
    return _new_dataset(slow_client, request)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the emulator's log lines to a failed test's report: its view of the failing request."""
    report = yield
    if report.failed and call.when == "call":
        for name in ("emulator", "slow_emulator"):
            emu = item.funcargs.get(name)
            if isinstance(emu, Emulator) and emu.log:
                report.sections.append((f"{name} log (last 40 lines)", "\n".join(emu.log[-40:])))
    return report
