"""examples/github-actions/backfill.yml: it parses, it authenticates through Workload Identity Federation, inputs
reach scripts only through env, and its own `range` and `backfill` steps, run by bash as the runner would, backfill
the right partitions and leave the step outputs and summary."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path

import yaml

from conftest import EXAMPLES

WORKFLOW = EXAMPLES / "github-actions" / "backfill.yml"


def workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def step(name: str) -> dict:
    steps = workflow()["jobs"]["backfill"]["steps"]
    return next(s for s in steps if s.get("name") == name or s.get("id") == name)


def run_step(name: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The step's `run` script, as the runner runs it (`bash -e {0}`), with its `env:` already resolved."""
    return subprocess.run(
        ["bash", "-e", "-c", step(name)["run"]], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True
    )


def test_the_workflow_is_scheduled_dispatchable_and_uses_wif():
    doc = workflow()
    assert doc["on"]["schedule"][0]["cron"] == "17 3 * * *"
    assert set(doc["on"]["workflow_dispatch"]["inputs"]) == {"start", "end"}
    assert doc["permissions"]["id-token"] == "write"
    steps = doc["jobs"]["backfill"]["steps"]
    auth = next(s for s in steps if str(s.get("uses", "")).startswith("google-github-actions/auth@"))
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}, "WIF, not a key"
    assert "make release" in step("build bq-backfill")["run"]
    for s in steps:
        assert "${{" not in s.get("run", ""), f"step {s.get('name')}: expressions go through env, not the script"
    assert "inputs.start" in step("range")["env"]["INPUT_START"]


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_the_schedule_range_is_yesterday_and_dispatch_inputs_pass_through(tmp_path):
    out = tmp_path / "out"
    out.touch()
    r = run_step("range", tmp_path, {"INPUT_START": "", "INPUT_END": "", "GITHUB_OUTPUT": str(out)})
    assert r.returncode == 0, r.stderr
    today = dt.datetime.now(dt.timezone.utc).date()
    got = outputs(out)
    # Around midnight UTC, `date` and this test can see different days.
    assert (got["start"], got["end"]) in {
        (str(d - dt.timedelta(days=1)), str(d)) for d in (today, today - dt.timedelta(days=1))
    }
    out.write_text("")
    hostile = "2024-01-01; touch pwned"
    r = run_step("range", tmp_path, {"INPUT_START": hostile, "INPUT_END": "2024-01-03", "GITHUB_OUTPUT": str(out)})
    assert r.returncode == 0, r.stderr
    assert outputs(out) == {"start": hostile, "end": "2024-01-03"}
    assert not (tmp_path / "pwned").exists()


def test_the_backfill_step_writes_partitions_outputs_and_summary(emulator, workdir):
    out, summary = workdir / "github_output", workdir / "summary.md"
    env = {
        "START": "2024-01-10",
        "END": "2024-01-13",
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        "BIGQUERY_EMULATOR_HOST": emulator.host,
    }
    r = run_step("backfill", workdir, env)
    assert r.returncode == 0, r.stderr
    got = outputs(out)
    assert {k: got[k] for k in ("status", "exit_code", "succeeded", "failed", "pending")} == {
        "status": "succeeded", "exit_code": "0", "succeeded": "3", "failed": "0", "pending": "0"
    }
    assert re.fullmatch(r"\d{8}t\d{6}-[0-9a-f]{8}", got["run_id"])
    assert "## ✅ bq-backfill `events_daily`: succeeded" in summary.read_text()
    assert r.stderr.count("::group::partition 202401") == 3
    totals = emulator.daily_totals()
    assert sorted(totals) == ["2024-01-10", "2024-01-11", "2024-01-12"]
    assert totals == emulator.raw_totals("2024-01-10", "2024-01-13")

    # A bad dispatch input is refused with the field named, nothing written.
    r = run_step("backfill", workdir, {**env, "START": "2024-01-10; rm -rf /"})
    assert r.returncode == 65, r.stderr
    assert "--start" in r.stderr
