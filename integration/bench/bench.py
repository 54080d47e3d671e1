#!/usr/bin/env python3
"""`make bench`: bq-backfill against the hand-written Python loop, on the project's emulator, side by side.

Every scenario starts a fresh `bq-emulator serve`, seeds a source table (one row per hour) and a
partitioned destination, sets the emulator's job latency (`POST /_emulator/config {"jobDelayMs"}`),
zeroes its counters, runs one backfill as a child process and reads back:

- wall time (spawn to exit) and peak RSS (the program's own `VmHWM`, polled; `wait4` would report the driver's too);
- REST calls: the sum of the emulator's per-method request counts (`GET /_emulator/stats`), for both
  programs through the same counter, divided by the partitions;
- the partition jobs' run time: the union of the [startTime, endTime] intervals of the jobs that wrote
  the destination (`GET /_emulator/jobs`); own overhead per partition = (wall - that) / partitions.

Then the scale figures (plan and the start of run for 10,000 partitions against 100,000 audit rows),
start-up to first request, and the target verdicts. The table goes to stdout and to `--out`
(docs/benchmarks.md). Progress goes to stderr. Stdlib only; the reference loop runs in `--python`
(the venv with google-cloud-bigquery).

    python3 integration/bench/bench.py --bin-dir target/release --python .venv/bin/python \
        --out docs/benchmarks.md [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = "bench-project"
DEST = f"{PROJECT}.bench.events"
SOURCE = f"{PROJECT}.bench.src"
AUDIT = f"{PROJECT}.ops.backfill_audit"
REF_LOG = f"{PROJECT}.ops.ref_log"
START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
QUERY = (
    f"SELECT ts, user, n FROM `{SOURCE}` "
    "WHERE ts >= @partition_start AND ts < @partition_end"
)
STEP = {"day": dt.timedelta(days=1), "hour": dt.timedelta(hours=1)}
TYPE = {"day": "DAY", "hour": "HOUR"}
ADJ = {"day": "daily", "hour": "hourly"}


class BenchError(Exception):
    """The benchmark cannot run (exit 2) — distinct from a missed target."""


KEEP_MARKER = "<!-- written by hand below this line; make bench keeps it -->"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the emulator


class Emulator:
    """One `bq-emulator serve` process on a free port, with its REST and control API."""

    def __init__(self, binary: Path):
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        addr: list[str] = []

        def drain() -> None:  # keeps the pipe empty for the process's whole life
            for line in self.proc.stderr:
                m = re.search(r"listening on (\S+)", line)
                if m and not addr:
                    addr.append(m.group(1))
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(30):
            self.stop()
            raise BenchError(f"{binary} printed no `listening on` line within 30 s")
        self.host = addr[0]
        self.url = f"http://{self.host}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, method: str, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise BenchError(f"{method} {path}: HTTP {e.code}: {e.read()[:500]!r}") from e

    def api(self, method: str, path: str, body=None) -> dict:
        return self.call(method, f"/bigquery/v2/projects/{PROJECT}{path}", body)

    def control(self, method: str, path: str, body=None) -> dict:
        return self.call(method, f"/_emulator/{path}", body)


def seed(emu: Emulator, granularity: str, hours: int, staged: bool = False) -> None:
    """Datasets `bench` and `ops`, the source (one row per hour for `hours` hours) and the destination;
    with `staged`, also `bench.staged`, partitioned like the destination and holding the same rows (the
    source of copy jobs)."""
    for ds in ("bench", "ops"):
        emu.api("POST", "/datasets", {"datasetReference": {"projectId": PROJECT, "datasetId": ds}})
    fields = [
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "user", "type": "STRING"},
        {"name": "n", "type": "INT64"},
    ]
    emu.api("POST", "/datasets/bench/tables", {
        "tableReference": {"projectId": PROJECT, "datasetId": "bench", "tableId": "src"},
        "schema": {"fields": fields},
    })
    emu.api("POST", "/datasets/bench/tables", {
        "tableReference": {"projectId": PROJECT, "datasetId": "bench", "tableId": "events"},
        "schema": {"fields": fields},
        "timePartitioning": {"type": TYPE[granularity], "field": "ts"},
    })
    if staged:
        emu.api("POST", "/datasets/bench/tables", {
            "tableReference": {"projectId": PROJECT, "datasetId": "bench", "tableId": "staged"},
            "schema": {"fields": fields},
            "timePartitioning": {"type": TYPE[granularity], "field": "ts"},
        })
    rows = [
        {"json": {"ts": (START + dt.timedelta(hours=h)).isoformat(), "user": f"u{h % 97}", "n": h}}
        for h in range(hours)
    ]
    for table in ("src", "staged") if staged else ("src",):
        for i in range(0, len(rows), 5000):
            out = emu.api("POST", f"/datasets/bench/tables/{table}/insertAll", {"rows": rows[i : i + 5000]})
            if out.get("insertErrors"):
                raise BenchError(f"seeding {table} failed: {out['insertErrors'][:1]}")


def descriptor(path: Path, job: str, granularity: str, count: int, copy: bool = False) -> Path:
    fmt = (lambda t: t.date().isoformat()) if granularity == "day" else (
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    task = {
        "version": 1,
        "job": job,
        "project": PROJECT,
        "destination": DEST,
        "partitions": {
            "granularity": granularity,
            "start": fmt(START),
            "end": fmt(START + count * STEP[granularity]),
        },
        "source": {"copy": {"table": f"{PROJECT}.bench.staged"}} if copy else {"query": QUERY},
        "checkpoint": {"table": AUDIT},
        "throttle": {"pause_seconds": 0, "pause_ratio": 0},
    }
    path.write_text(json.dumps(task, indent=2))
    return path


# ---------------------------------------------------------------- measuring a child


@dataclass
class Measured:
    rc: int
    wall: float
    rss_kb: int
    cpu: float
    stdout: str
    stderr: str
    # (seconds since spawn, event name) of every stdout line that is a JSON event, as it arrived.
    events: list = field(default_factory=list)

    def first(self, name: str) -> float | None:
        return next((t for t, e in self.events if e == name), None)

    def partition_phase(self) -> float | None:
        """From the first partition_started to the last partition_succeeded: the partitions' part
        of the run, without the per-run set-up (audit reads, the lease) and wind-down."""
        starts = [t for t, e in self.events if e == "partition_started"]
        ends = [t for t, e in self.events if e == "partition_succeeded"]
        return max(ends) - min(starts) if starts and ends else None

    def partition_walls(self) -> list[float]:
        """Each partition's wall time: from its partition_started (the first one) or the previous
        partition_succeeded to its partition_succeeded."""
        out, last = [], self.first("partition_started")
        for t, e in self.events:
            if e == "partition_succeeded" and last is not None:
                out.append(t - last)
                last = t
        return out


def measure(cmd: list[str], env: dict, timeout: float) -> Measured:
    """Runs `cmd`; wall from spawn to exit, peak RSS and CPU time from the child's rusage, and the
    arrival time of each event line on stdout."""
    err = tempfile.TemporaryFile("w+")
    began = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True
    )
    lines: list[str] = []
    events: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r'"event"\s*:\s*"([a-z_]+)"', line)
            if m:
                events.append((time.monotonic() - began, m.group(1)))

    # Peak RSS from the kernel's high-water mark of the program's own memory (VmHWM), polled:
    # wait4's ru_maxrss would be the larger of it and this driver's, because a forked child keeps
    # its parent's high-water mark across exec.
    peak_kb = [0]
    exited = threading.Event()

    def watch() -> None:
        path = f"/proc/{proc.pid}/status"
        while not exited.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak_kb[0] = max(peak_kb[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass
            exited.wait(0.002)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        exited.set()
    watcher.join(1)
    wall = time.monotonic() - began
    reader.join(10)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    return Measured(
        proc.returncode, wall, peak_kb[0], usage.ru_utime + usage.ru_stime, "".join(lines), err.read(),
        events,
    )


def partition_job_seconds(emu: Emulator, every_job: bool = False) -> tuple[float, int]:
    """Union of the run intervals of the jobs that wrote the destination (or of every job), and
    how many there were."""
    spans = []
    for j in emu.control("GET", "jobs")["jobs"]:
        dest = json.dumps(j.get("destination") or "")
        if every_job or '"events$' in dest or "events$" in dest:
            # Microseconds where the emulator gives them (BigQuery's millis floor a
            # sub-millisecond job to nothing, which would count its run as overhead).
            if j.get("startMicros") and j.get("endMicros"):
                spans.append((j["startMicros"] / 1000.0, j["endMicros"] / 1000.0))
            elif j.get("startTime") and j.get("endTime"):
                spans.append((j["startTime"], j["endTime"]))
    spans.sort()
    covered, end = 0, None
    for s, e in spans:
        if end is None or s > end:
            covered += e - s
            end = e
        elif e > end:
            covered += e - end
            end = e
    return covered / 1000.0, len(spans)


# ---------------------------------------------------------------- scenarios


@dataclass
class Row:
    program: str
    granularity: str
    partitions: int
    latency_s: float
    concurrency: int
    note: str = ""
    wall: float | None = None
    calls: float | None = None
    job_s: float | None = None
    rss_mb: float | None = None
    methods: dict = field(default_factory=dict)
    partition_walls: list = field(default_factory=list)
    phase_s: float | None = None
    all_jobs_s: float | None = None

    @property
    def overhead_ms(self) -> float | None:
        if self.wall is None or self.job_s is None:
            return None
        return (self.wall - self.job_s) / self.partitions * 1000.0

    @property
    def outside_jobs_ms(self) -> float | None:
        """Like overhead_ms, with every job's run time taken out (the loop's log queries too)."""
        if self.wall is None or self.all_jobs_s is None:
            return None
        return (self.wall - self.all_jobs_s) / self.partitions * 1000.0


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = Path(args.bin_dir).resolve()
        self.tool = self.bin / "bq-backfill"
        self.emulator = self.bin / "bq-emulator"
        for b in (self.tool, self.emulator):
            if not os.access(b, os.X_OK):
                raise BenchError(f"no executable {b}; hint: cargo build --profile bench-fast -p bq-backfill -p bq-emulator")
        self.work = Path(tempfile.mkdtemp(prefix="bq-bench-"))
        self.deadline = time.monotonic() + args.time_cap
        help_text = subprocess.run([str(self.tool), "run", "--help"], capture_output=True, text=True).stdout
        self.has_concurrency = "--concurrency" in help_text

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 5:
            raise BenchError(f"time cap of {self.args.time_cap} s reached")
        return left

    def fresh(self, granularity: str, count: int, latency_ms: int, staged: bool = False) -> Emulator:
        emu = Emulator(self.emulator)
        hours = int(count * STEP[granularity].total_seconds() // 3600)
        seed(emu, granularity, hours, staged)
        emu.control("POST", "config", {"jobDelayMs": latency_ms})
        emu.control("POST", "reset")
        return emu

    def finish(self, row: Row, emu: Emulator, m: Measured, what: str) -> Row:
        if m.rc != 0:
            raise BenchError(f"{what} exited {m.rc}: {m.stderr[-2000:]}{m.stdout[-1000:]}")
        stats = emu.control("GET", "stats")
        row.methods = stats["requests"]
        row.calls = sum(row.methods.values()) / row.partitions
        row.job_s, jobs = partition_job_seconds(emu)
        row.all_jobs_s, _ = partition_job_seconds(emu, every_job=True)
        if jobs < row.partitions:
            raise BenchError(f"{what}: {jobs} partition jobs for {row.partitions} partitions")
        row.wall = m.wall
        row.rss_mb = m.rss_kb / 1024.0
        row.partition_walls = m.partition_walls()
        row.phase_s = m.partition_phase()
        log(
            f"  {what}: {m.wall:.2f} s, {row.calls:.2f} calls/partition, overhead "
            f"{row.overhead_ms:.2f} ms/partition, {row.rss_mb:.1f} MB"
        )
        return row

    def tool_row(
        self, granularity: str, count: int, latency_s: float, concurrency: int, note="", copy=False
    ) -> Row:
        row = Row("bq-backfill" + (" (copy jobs)" if copy else ""), granularity, count, latency_s, concurrency, note)
        if concurrency > 1 and not self.has_concurrency:
            row.note = "not implemented yet (`run --help` has no --concurrency)"
            log(f"  bq-backfill {granularity} x{count} concurrency {concurrency}: {row.note}")
            return row
        emu = self.fresh(granularity, count, int(latency_s * 1000), staged=copy)
        try:
            task = descriptor(
                self.work / f"{granularity}-{count}.json", f"bench_{granularity}", granularity, count, copy
            )
            cmd = [*shlex.split(self.args.wrap), str(self.tool), "run", "--task", str(task)]
            if self.has_concurrency:
                cmd += ["--concurrency", str(concurrency)]
            env = {"PATH": os.environ.get("PATH", ""), "BIGQUERY_EMULATOR_HOST": emu.host}
            m = measure(cmd, env, self.remaining())
            return self.finish(row, emu, m, f"bq-backfill {granularity} x{count} latency {latency_s} s c{concurrency}")
        finally:
            emu.stop()

    def reference_row(self, granularity: str, count: int, latency_s: float, note="") -> Row:
        row = Row("Python loop", granularity, count, latency_s, 1, note)
        emu = self.fresh(granularity, count, int(latency_s * 1000))
        try:
            fmt = START.isoformat()
            cmd = [
                self.args.python, str(HERE / "reference_loop.py"),
                "--endpoint", emu.url, "--project", PROJECT, "--destination", DEST, "--log", REF_LOG,
                "--granularity", granularity, "--start", fmt, "--count", str(count), "--query", QUERY,
            ]
            env = dict(os.environ)
            env.pop("BIGQUERY_EMULATOR_HOST", None)
            m = measure(cmd, env, self.remaining())
            return self.finish(row, emu, m, f"Python loop {granularity} x{count} latency {latency_s} s")
        finally:
            emu.stop()

    # ------------------------------------------------------------ scale and start-up

    def scale(self, partitions: int, rows_per_partition: int) -> dict:
        """plan, and run up to its first partition_started event, for `partitions` hourly partitions
        against an audit log of `partitions * rows_per_partition` rows."""
        emu = self.fresh("hour", 1, 0)
        try:
            env = {"PATH": os.environ.get("PATH", ""), "BIGQUERY_EMULATOR_HOST": emu.host}
            # One real partition first, so the audit table, its view and a genuine row exist.
            one = descriptor(self.work / "scale-1.json", "bench_scale", "hour", 1)
            m = measure([str(self.tool), "run", "--task", str(one)], env, self.remaining())
            if m.rc != 0:
                raise BenchError(f"scale seed run exited {m.rc}: {m.stderr[-2000:]}")
            data = emu.api("GET", "/datasets/ops/tables/backfill_audit/data")
            schema = emu.api("GET", "/datasets/ops/tables/backfill_audit")["schema"]["fields"]
            names = [f["name"] for f in schema]
            template = dict(zip(names, (c["v"] for c in data["rows"][-1]["f"])))
            audit_rows = self.audit_rows(template, partitions, rows_per_partition)
            log(f"  seeding {len(audit_rows)} audit rows")
            for i in range(0, len(audit_rows), 10_000):
                out = emu.api("POST", "/datasets/ops/tables/backfill_audit/insertAll", {"rows": audit_rows[i : i + 10_000]})
                if out.get("insertErrors"):
                    raise BenchError(f"seeding the audit log failed: {out['insertErrors'][:1]}")
            task = descriptor(self.work / "scale.json", "bench_scale", "hour", partitions)
            emu.control("POST", "reset")
            plan = measure([str(self.tool), "plan", "--format", "json", "--task", str(task)], env, self.remaining())
            if plan.rc != 0:
                raise BenchError(f"plan exited {plan.rc}: {plan.stderr[-2000:]}")
            plan_calls = sum(emu.control("GET", "stats")["requests"].values())
            emu.control("POST", "reset")
            run = measure([str(self.tool), "run", "--task", str(task)], env, self.remaining())
            if run.rc != 0:
                raise BenchError(f"scale run exited {run.rc}: {run.stderr[-2000:]}")
            return {
                "partitions": partitions,
                "audit_rows": len(audit_rows) + 2,
                "plan_wall": plan.wall,
                "plan_cpu": plan.cpu,
                "plan_rss_mb": plan.rss_kb / 1024.0,
                "plan_calls": plan_calls,
                "run_started_wall": run.first("run_started"),
                "run_wall": run.wall,
                "run_cpu": run.cpu,
                "run_rss_mb": run.rss_kb / 1024.0,
                "run_calls": sum(emu.control("GET", "stats")["requests"].values()),
                "run_skipped": sum(1 for _, e in run.events if e == "partition_skipped"),
            }
        finally:
            emu.stop()

    @staticmethod
    def audit_rows(template: dict, partitions: int, per: int) -> list[dict]:
        """`per` rows per partition (RUNNING/SUCCEEDED pairs of successive attempts), the latest SUCCEEDED,
        copied from a row the tool wrote so every column has its real shape."""
        rows = []
        base = START + dt.timedelta(days=800)
        for p in range(partitions):
            pid = (START + dt.timedelta(hours=p)).strftime("%Y%m%d%H")
            for k in range(per):
                r = {k2: v for k2, v in template.items() if v is not None}
                for key in ("recorded_at", "started_at", "finished_at"):
                    if key in r:
                        r[key] = (base + dt.timedelta(seconds=p * per + k)).isoformat()
                r["partition_id"] = pid
                r["status"] = "SUCCEEDED" if k % 2 else "RUNNING"
                r["attempt"] = k // 2 + 1
                rows.append({"insertId": f"{pid}-{k}", "json": r})
        return rows

    def startup(self, runs: int) -> list[float]:
        """Spawn -> first byte of the first HTTP request, against a listener that answers nothing."""
        task = descriptor(self.work / "startup.json", "bench_startup", "day", 1)
        out = []
        for _ in range(runs):
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            port = srv.getsockname()[1]
            env = {"PATH": os.environ.get("PATH", ""), "BIGQUERY_EMULATOR_HOST": f"127.0.0.1:{port}"}
            began = time.monotonic()
            proc = subprocess.Popen(
                [str(self.tool), "run", "--task", str(task)], env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            srv.settimeout(10)
            try:
                conn, _ = srv.accept()
                conn.settimeout(10)
                conn.recv(1)
                out.append((time.monotonic() - began) * 1000.0)
                conn.close()
            finally:
                proc.kill()
                proc.wait()
                srv.close()
        return out


# ---------------------------------------------------------------- the report


def median_of(n: int, run) -> Row:
    """Runs a scenario `n` times; the run with the median own overhead, the range in its note."""
    runs = sorted((run() for _ in range(n)), key=lambda r: r.overhead_ms or 0.0)
    mid = runs[len(runs) // 2]
    spread = f"median of {n}: {runs[0].overhead_ms:.2f}–{runs[-1].overhead_ms:.2f} ms"
    mid.note = f"{mid.note}; {spread}" if mid.note else spread
    return mid


def fmt(v, spec: str, unit: str = "") -> str:
    return "—" if v is None else f"{v:{spec}}{unit}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {cpu}, {platform.system()} {platform.release()}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(bench: Bench, rows: list[Row], extra: dict, commands: list[str]) -> tuple[str, bool]:
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`integration/bench/bench.py`) on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- machine: {machine()}, loopback only, other builds may have been running",
        f"- binaries: `{bench.tool}`, `{bench.emulator}` (profile `{bench.bin.name}`)",
        "- emulator: a fresh `bq-emulator serve` per scenario; job latency is its `jobDelayMs` (time spent RUNNING)",
        "- throttle 0 (`pause_seconds: 0, pause_ratio: 0`); source: one row per hour, the query filters on "
        "`@partition_start`/`@partition_end`",
        "- calls/partition: every REST request the emulator counted during the run (set-up calls included) / partitions",
        "- own overhead/partition: (wall − union of the partition jobs' RUNNING..DONE intervals) / partitions",
        "- peak RSS: the program's own high-water mark (`VmHWM` in `/proc/PID/status`, polled every 2 ms; for the Python loop: the interpreter with the client)",
        "",
        "| program | partitions | job latency | concurrency | wall | calls/partition | own overhead/partition | peak RSS | calls by method |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        methods = ", ".join(f"{k} {v / r.partitions:.2f}" for k, v in sorted(r.methods.items())) or r.note
        lines.append(
            f"| {r.program} | {r.partitions} {ADJ[r.granularity]}"
            f"{' (' + r.note + ')' if r.note and r.wall is not None else ''} | {r.latency_s:g} s | {r.concurrency} | "
            f"{fmt(r.wall, '.2f', ' s')} | {fmt(r.calls, '.2f')} | {fmt(r.overhead_ms, '.2f', ' ms')} | "
            f"{fmt(r.rss_mb, '.1f', ' MB')} | {methods} |"
        )
    lines.append("")

    def find(program, granularity, partitions, latency, conc=1):
        for r in rows:
            if (r.program, r.granularity, r.partitions, r.latency_s, r.concurrency) == (
                program, granularity, partitions, latency, conc
            ) and r.wall is not None:
                return r
        return None

    ok_all = True
    verdicts = ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    # The steady path: the long runs, where the per-run calls (tables, audit read, lease) are
    # spread thin; the 5-partition waiting checks carry them on few partitions.
    tool_rows = [
        r for r in rows
        if r.program == "bq-backfill" and r.calls is not None and r.partitions >= 300 and r.concurrency == 1
    ]
    worst_calls = max((r.calls for r in tool_rows), default=None)
    v = None if worst_calls is None else worst_calls <= 3
    verdicts.append(
        f"| ≤ 3 REST calls per partition (bq-backfill, the 366- and 8,784-partition runs, per-run calls included) | "
        f"worst {fmt(worst_calls, '.2f')} | {verdict(v)} |"
    )
    ok_all &= v is not False
    # Per partition: the tool's hourly run is the whole year, the loop's a subset of it.
    for g, n_tool, n in (("day", extra["daily"], extra["daily"]), ("hour", extra["hourly"], extra["hourly_ref"])):
        t = find("bq-backfill", g, n_tool, 0.0)
        p = find("Python loop", g, n, 0.0)
        if t and p and t.overhead_ms and t.overhead_ms > 0:
            ratio = p.overhead_ms / t.overhead_ms
            v = ratio >= 10
            verdicts.append(
                f"| ≥ 10× less own overhead per partition than the Python loop ({n_tool} / {n} {ADJ[g]}, latency 0) | "
                f"{p.overhead_ms:.2f} / {t.overhead_ms:.2f} ms = {ratio:.1f}× (calls {p.calls:.2f} / {t.calls:.2f} = "
                f"{p.calls / t.calls:.2f}×; wall {p.wall / t.wall:.2f}×; taking every job's run time out, the "
                f"loop's log queries too: {p.outside_jobs_ms:.2f} / {t.outside_jobs_ms:.2f} ms = "
                f"{p.outside_jobs_ms / t.outside_jobs_ms:.1f}×) | {verdict(v)} |"
            )
            ok_all &= v
    for w in extra.get("wait", []):
        per = max(w.partition_walls) if w.partition_walls else w.wall / w.partitions
        v = per <= 2.1
        kind = "copy jobs, adaptive jobs.get" if "copy" in w.program else "query jobs, getQueryResults long-poll"
        verdicts.append(
            f"| job latency 2 s, {kind}: wall per partition ≤ 2.1 s ({w.partitions} partitions) | "
            f"slowest {per:.3f} s (each: {', '.join(f'{x:.3f}' for x in w.partition_walls)}) | {verdict(v)} |"
        )
        ok_all &= v
    s = extra.get("scale")
    if s:
        v = s["plan_cpu"] < 1 and s["plan_rss_mb"] < 50
        verdicts.append(
            f"| `plan`, {s['partitions']} partitions, {s['audit_rows']} audit rows: own time < 1 s, RSS < 50 MB | "
            f"wall {s['plan_wall']:.2f} s (emulator included), CPU {s['plan_cpu']:.3f} s, {s['plan_rss_mb']:.1f} MB, "
            f"{s['plan_calls']} REST calls | {verdict(v)} |"
        )
        ok_all &= v
        v = s["run_cpu"] < 1 and s["run_rss_mb"] < 50
        verdicts.append(
            f"| `run`, same job (every partition done: the start, then {s['run_skipped']} skips): own time < 1 s, "
            f"RSS < 50 MB | run_started after {fmt(s['run_started_wall'], '.2f', ' s')} wall; whole run "
            f"{s['run_wall']:.2f} s wall, CPU {s['run_cpu']:.3f} s, {s['run_rss_mb']:.1f} MB, "
            f"{s['run_calls']} REST calls | {verdict(v)} |"
        )
        ok_all &= v
    st = extra.get("startup")
    if st:
        med = statistics.median(st)
        v = med < 20
        verdicts.append(
            f"| start-up to first request < 20 ms (median of {len(st)}) | {med:.1f} ms (min {min(st):.1f}, max {max(st):.1f}) | {verdict(v)} |"
        )
        ok_all &= v
    c1 = find("bq-backfill", "day", extra["daily"], 0.0, 1)
    c8 = find("bq-backfill", "day", extra["daily"], 0.0, 8)
    l1 = find("bq-backfill", "day", extra["latency_subset"], 1.0, 1)
    l8 = find("bq-backfill", "day", extra["latency_subset"], 1.0, 8)
    if l1 and l8 and l1.phase_s and l8.phase_s:
        phase = l1.phase_s / l8.phase_s
        v = phase >= 7
        verdicts.append(
            f"| near-linear speed-up to 8 (latency 1 s, {l1.partitions} partitions): the partitions "
            f"(first partition_started → last partition_succeeded) | {phase:.2f}× "
            f"({l1.phase_s:.2f} s → {l8.phase_s:.2f} s); the whole run {l1.wall / l8.wall:.2f}× "
            f"({l1.wall:.2f} s → {l8.wall:.2f} s: its set-up, two audit reads and the lease claim, "
            f"is {l8.wall - l8.phase_s:.2f} s of queries at 1 s each, the same for any concurrency) | {verdict(v)} |"
        )
        ok_all &= v
    elif not bench.has_concurrency:
        verdicts.append("| near-linear speed-up to 8 | not implemented yet (no `--concurrency`) | n/a |")
    if c1 and c8:
        verdicts.append(
            f"| 8 slots at latency 0 ({c8.partitions} days; info) | {c8.wall:.2f} s against {c1.wall:.2f} s for one slot: "
            f"the limit of 50 partition-job starts per 10 s holds them to 5/s, as BigQuery would | info |"
        )
    lines += verdicts
    lines += [
        "",
        "Scale method: the audit log is seeded with insertAll (rows copied from one the tool wrote, 10 per "
        "partition, RUNNING/SUCCEEDED pairs of 5 attempts, the latest SUCCEEDED with the job's fingerprint, so every "
        "partition is planned to skip: the re-run of a finished backfill); "
        "own time is the tool's CPU time (user + sys), because its wall time includes the emulator evaluating "
        "the audit query. Start-up: spawn → first byte of the first HTTP request on a loopback listener "
        "(`BIGQUERY_EMULATOR_HOST` pointing at it), fork and exec included.",
        "",
        "Commands:",
        "",
        "```",
        *commands,
        "```",
        "",
    ]
    return "\n".join(lines), ok_all


def main() -> int:
    p = argparse.ArgumentParser(description="bq-backfill vs the hand-written Python loop, on the emulator")
    p.add_argument("--bin-dir", required=True, help="holds bq-backfill and bq-emulator")
    p.add_argument("--python", required=True, help="python with google-cloud-bigquery (the venv)")
    p.add_argument("--out", help="write the Markdown table here")
    p.add_argument("--quick", action="store_true", help="tiny scenarios (smoke test)")
    p.add_argument("--time-cap", type=float, default=900.0, help="seconds for the whole benchmark")
    p.add_argument("--wrap", default="", help="prefix for the tool's command, e.g. 'perf record -o F --'")
    p.add_argument("--only-hourly", type=int, nargs="?", const=8784, metavar="N",
                   help="only the hourly latency-0 run, of N partitions (default 8784), e.g. to profile it")
    p.add_argument("--smoke", action="store_true", help="3 daily partitions, both programs, JSON out (a test)")
    args = p.parse_args()
    if args.smoke:
        try:
            bench = Bench(args)
            rows = [bench.tool_row("day", 3, 0.0, 1), bench.reference_row("day", 3, 0.0)]
        except BenchError as e:
            print(f"bench: {e}", file=sys.stderr)
            return 2
        keys = ("program", "partitions", "wall", "calls", "job_s", "rss_mb", "methods", "partition_walls")
        print(json.dumps([{k: getattr(r, k) for k in keys} | {"overhead_ms": r.overhead_ms} for r in rows]))
        return 0
    quick = args.quick
    daily = 5 if quick else 366
    hourly = 24 if quick else 8784
    hourly_ref = 24 if quick else 366
    subset = 3 if quick else 40
    # The loop's three jobs per partition take 3 s at latency 1 s: half the tool's subset.
    ref_subset = 3 if quick else 12
    hourly_c8 = 24 if quick else 120
    if args.only_hourly:
        try:
            row = Bench(args).tool_row("hour", args.only_hourly, 0.0, 1)
        except BenchError as e:
            print(f"bench: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"wall": row.wall, "calls": row.calls, "overhead_ms": row.overhead_ms}))
        return 0
    try:
        bench = Bench(args)
        rows: list[Row] = []
        log(f"bq-backfill {'has' if bench.has_concurrency else 'has no'} --concurrency")
        # With 8 slots the default limit of 50 partition-job starts per 10 s (BigQuery's
        # per-table rate) holds the run to 5 partitions/s: the hourly year would take half an hour.
        limited = "8 slots, held to 50 starts per 10 s (BigQuery's per-table limit)"
        # The ratio target's two rows: the median of three runs each (this machine's run-to-run
        # spread is large), the others' range in the note.
        rows.append(median_of(3, lambda: bench.tool_row("day", daily, 0.0, 1)))
        rows.append(bench.tool_row("day", daily, 0.0, 8, note=limited))
        rows.append(median_of(3, lambda: bench.reference_row("day", daily, 0.0)))
        rows.append(bench.tool_row("hour", hourly, 0.0, 1))
        # 8 slots over the hours: 50 start at once, then 5/s; 120 show both phases in ~15 s.
        rows.append(bench.tool_row("hour", hourly_c8, 0.0, 8,
                                   note=f"subset: the first {hourly_c8} hours; {limited}" if not quick else ""))
        rows.append(bench.reference_row("hour", hourly_ref, 0.0, note=f"subset: the first {hourly_ref} hours" if not quick else ""))
        # Job latency 1 s: a day and an hour partition cost the same, so days only.
        for conc in (1, 8):
            rows.append(bench.tool_row("day", subset, 1.0, conc, note=f"subset: the first {subset} days"))
        rows.append(bench.reference_row("day", ref_subset, 1.0, note=f"subset: the first {ref_subset} days"))
        wait = bench.tool_row("day", 4, 2.0, 1, note="waiting check")
        rows.append(wait)
        wait_copy = bench.tool_row("day", 4, 2.0, 1, note="waiting check", copy=True)
        rows.append(wait_copy)
        log("scale: plan and run start for 10,000 partitions / 100,000 audit rows")
        scale = bench.scale(100 if quick else 10_000, 10)
        log(f"  {scale}")
        log("start-up to first request")
        startup = bench.startup(3 if quick else 15)
        log(f"  {', '.join(f'{s:.1f}' for s in startup)} ms")
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    commands = [
        "make bench   # = cargo build --profile bench-fast -p bq-backfill -p bq-emulator && "
        "python3 integration/bench/bench.py --bin-dir target/bench-fast --python .venv/bin/python --out docs/benchmarks.md",
        "bq-backfill run --task TASK.json     (BIGQUERY_EMULATOR_HOST=127.0.0.1:PORT; --concurrency N when it exists)",
        f"{args.python} integration/bench/reference_loop.py --endpoint http://127.0.0.1:PORT ...",
        "bq-backfill plan --format json --task SCALE.json",
    ]
    extra = {
        "daily": daily, "hourly": hourly, "hourly_ref": hourly_ref, "latency_subset": subset,
        "hourly_c8": hourly_c8,
        "wait": [w for w in (wait, wait_copy) if w.wall is not None], "scale": scale, "startup": startup,
    }
    text, ok = report(bench, rows, extra, commands)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # What people wrote below the marker (the profile, the build's timings) survives a re-run.
        kept = ""
        if out.exists() and KEEP_MARKER in out.read_text():
            kept = out.read_text().split(KEEP_MARKER, 1)[1]
        out.write_text(text.rstrip("\n") + "\n\n" + KEEP_MARKER + kept)
        log(f"wrote {args.out}")
    # Missed targets are reported in the table; the exit code says only whether the benchmark ran.
    return 0


if __name__ == "__main__":
    sys.exit(main())
