"""Dagster asset that shells out to bq-backfill for its partition.

(Dagster Pipes messages arrive in a later release; this reads the JSON event
stream from stdout, which works with any Dagster version.)
"""
import json
import subprocess

from dagster import AssetExecutionContext, DailyPartitionsDefinition, Failure, MetadataValue, asset


@asset(partitions_def=DailyPartitionsDefinition(start_date="2024-01-01"))
def events_daily(context: AssetExecutionContext) -> None:
    window = context.partition_time_window
    proc = subprocess.run(
        [
            "bq-backfill", "run", "--task", "tasks/events_daily.json",
            "--start", window.start.strftime("%Y-%m-%d"),
            "--end", window.end.strftime("%Y-%m-%d"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    for line in proc.stderr.splitlines():
        context.log.info(line)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    finished = events[-1]
    rows = sum(e.get("rows_written") or 0 for e in events if e["event"] == "partition_succeeded")
    context.add_output_metadata({
        "status": finished["status"],
        "rows_written": rows,
        "run_id": finished["run_id"],
        "summary": MetadataValue.json(finished),
    })
    if proc.returncode != 0:
        raise Failure(description=f"bq-backfill exited {proc.returncode}: {finished.get('error')}")
