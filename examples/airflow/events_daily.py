"""Airflow DAGs for the `events_daily` backfill, for Airflow 2.10 and 3.x alike.

- `events_daily`: every day, rebuild the partitions of the data interval
  (`--start`/`--end` from `data_interval_start`/`data_interval_end`).
- `events_daily_history`: a one-off historical backfill, triggered by hand
  with the range as params (`airflow dags trigger events_daily_history
  --conf '{"start": "2023-01-01", "end": "2024-01-01"}'`). Stop it any time:
  the next trigger resumes where it stopped, skipping what is done.

The descriptor is passed with --task, never on stdin: Airflow 3 hands the task
its supervisor's socket as fd 0. Values reach the command through `env`, so
no param is ever spliced into the shell text; bq-backfill validates them. The
last line of output, always `run_finished`, becomes the `return_value` XCom.

Exit codes and what Airflow does with them (BashOperator: 0 succeeds, 99
skips, anything else fails and is retried while retries last):
  0   success.
  1   some partitions failed (BigQuery refused them): the retry rebuilds only
      those; a permanent error (bad query) fails again, see the XCom.
  75  time budget (--max-runtime) spent with partitions pending: the retry
      resumes. The run stopped cleanly and released its lease, so the retry
      can start at once.
  73  another run holds the lease. After a killed run (SIGKILL, a lost worker)
      the lease blocks others until `lease.ttl_seconds` (180 s by default)
      has passed: keep `retry_delay` above it, as below.
  64, 65, 66, 77, 78  usage, descriptor, input, permission, configuration:
      retrying does not help; fix the cause (the error is in the XCom and log).
  130/143  cancelled (SIGINT/SIGTERM, e.g. the task was marked failed).
bq-backfill never exits 99, so no failure is ever taken for a skip.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.models.param import Param
    from airflow.operators.bash import BashOperator

# Where the binary and the descriptor are on the workers; override with env.
BQ_BACKFILL = os.environ.get("BQ_BACKFILL", "/opt/bq-backfill/bq-backfill")
TASK = os.environ.get("BQ_BACKFILL_TASK", "/opt/airflow/tasks/events_daily.json")

COMMAND = f'"{BQ_BACKFILL}" run --task "{TASK}" --start "$START" --end "$END" --max-runtime "$MAX_RUNTIME"'

DEFAULT_ARGS = {
    "retries": 3,
    # Above the lease TTL (180 s), so a retry after a killed run is not refused with 73.
    "retry_delay": timedelta(minutes=5),
}


def backfill_task(task_id: str, start: str, end: str, timeout: timedelta) -> BashOperator:
    return BashOperator(
        task_id=task_id,
        bash_command=COMMAND,
        env={
            "START": start,
            "END": end,
            # Stop cleanly (exit 75) five minutes before Airflow's timeout would kill the task.
            "MAX_RUNTIME": str(int(timeout.total_seconds()) - 300),
        },
        append_env=True,  # keep GOOGLE_APPLICATION_CREDENTIALS, BIGQUERY_EMULATOR_HOST, ...
        execution_timeout=timeout,
        do_xcom_push=True,
    )


with DAG(
    dag_id="events_daily",
    start_date=datetime(2024, 1, 1),
    # A data-interval timetable on both versions: Airflow 3's "@daily" is a
    # trigger timetable whose interval is empty (start == end), which would
    # hand bq-backfill an empty range.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    catchup=False,
    max_active_runs=1,  # the run lease refuses overlapping runs anyway (exit 73)
    default_args=DEFAULT_ARGS,
    tags=["bq-backfill"],
) as incremental:
    backfill_task(
        "events_daily",
        "{{ data_interval_start | ds }}",
        "{{ data_interval_end | ds }}",
        timedelta(hours=1),
    )

with DAG(
    dag_id="events_daily_history",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "start": Param("2024-01-01", type="string", description="first partition (inclusive)"),
        "end": Param("2025-01-01", type="string", description="end of the range (exclusive)"),
    },
    tags=["bq-backfill"],
) as history:
    backfill_task("events_daily_history", "{{ params.start }}", "{{ params.end }}", timedelta(hours=6))
