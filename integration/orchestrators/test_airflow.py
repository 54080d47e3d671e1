"""examples/airflow/events_daily.py under the real Airflow of this venv (2.10 or 3.x): each DAG's task runs through
`dag.test()` with the real BashOperator against the emulator; the task succeeds, the destination holds exactly the
partitions of the data interval (or of the params), and the XCom is `run_finished`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import binary

HERE = Path(__file__).resolve().parent


@pytest.fixture
def airflow_env(tmp_path, emulator, workdir):
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(HERE.parents[1] / "examples" / "airflow"),
        "BQ_BACKFILL": str(workdir / "dist" / "bq-backfill"),
        "BQ_BACKFILL_TASK": str(workdir / "tasks" / "events_daily.json"),
        "BIGQUERY_EMULATOR_HOST": emulator.host,
    }
    airflow = Path(sys.executable).parent / "airflow"
    r = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return env


def run_dag(env: dict, dag_id: str, logical_date: str, conf: dict | None = None) -> dict:
    args = [sys.executable, str(HERE / "airflow_runner.py"), dag_id, logical_date]
    if conf is not None:
        args.append(json.dumps(conf))
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def finished(result: dict) -> dict:
    xcom = result["xcom"]
    assert isinstance(xcom, str), f"the XCom is the last output line: {xcom!r}"
    event = json.loads(xcom)
    assert event["event"] == "run_finished", event
    return event


def test_the_daily_dag_rebuilds_its_data_interval(airflow_env, emulator):
    binary("BQ_BACKFILL_BIN")
    result = run_dag(airflow_env, "events_daily", "2024-01-15")
    assert result["state"] == "success", result
    event = finished(result)
    assert (event["status"], event["exit_code"], event["succeeded"]) == ("succeeded", 0, 1)
    totals = emulator.daily_totals()
    # A data-interval timetable: the run at 01-15 covers [01-14, 01-15).
    assert list(totals) == ["2024-01-14"], totals
    assert totals == emulator.raw_totals("2024-01-14", "2024-01-15")


def test_the_history_dag_backfills_the_range_in_its_params(airflow_env, emulator):
    result = run_dag(airflow_env, "events_daily_history", "2024-02-01", {"start": "2024-01-05", "end": "2024-01-09"})
    assert result["state"] == "success", result
    event = finished(result)
    assert (event["status"], event["partitions_total"], event["succeeded"]) == ("succeeded", 4, 4)
    assert emulator.daily_totals() == emulator.raw_totals("2024-01-05", "2024-01-09")
    assert len(emulator.daily_totals()) == 4
