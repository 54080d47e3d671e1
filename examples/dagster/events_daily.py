"""Dagster: the `events_daily` asset, one daily partition per BigQuery partition, run by bq-backfill through
Dagster Pipes.

`PipesSubprocessClient` starts bq-backfill with the Pipes variables set. bq-backfill then takes the run's partition
key, key range or time window as its range (the descriptor leaves `partitions` open: a granularity, no start/end),
and reports one materialization per partition it rebuilt, with the partition key and BigQuery's figures (rows
written, bytes processed and billed, the job ID and a link to it, duration, attempt) as metadata. Its logs (stderr)
and its event stream (stdout) stream into the step's compute logs as they are written; nothing here reads stdout.

A backfill of many keys runs as one process (`BackfillPolicy.single_run()`): bq-backfill walks the partitions in
order, skipping those already done with the same query.

Exit codes: non-zero fails the step (`DagsterPipesExecutionError`); the retry policy retries it. 75 (time budget
spent) and 1 (some partitions failed) resume on retry with only what is left; 73 means another run holds the lease:
the delay below is above the lease TTL (180 s by default) so a retry after a killed run is not refused. 65/78 are
configuration errors that a retry does not fix.
"""

import os

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Definitions,
    MaterializeResult,
    PipesSubprocessClient,
    RetryPolicy,
    asset,
)

BQ_BACKFILL = os.environ.get("BQ_BACKFILL", "bq-backfill")
TASK = os.environ.get("BQ_BACKFILL_TASK", "tasks/events_daily.json")


@asset(
    partitions_def=DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC"),
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RetryPolicy(max_retries=2, delay=240),
)
def events_daily(context: AssetExecutionContext, pipes_subprocess_client: PipesSubprocessClient):
    command = [BQ_BACKFILL, "run", "--task", TASK]
    if not context.has_partition_key:
        # Dagster 1.13 puts a single key in the Pipes context but not a range: pass the range's window.
        window = context.partition_time_window
        command += ["--start", window.start.isoformat(), "--end", window.end.isoformat()]
    invocation = pipes_subprocess_client.run(command=command, context=context)
    # bq-backfill reports one materialization per partition it rebuilt; Dagster records one per partition of the
    # run, so each partition's figures go on its own materialization.
    for result in invocation.get_results():
        metadata = dict(result.metadata or {})
        context.add_asset_metadata(metadata, partition_key=metadata["partition"].value)
    return MaterializeResult()


defs = Definitions(
    assets=[events_daily],
    resources={"pipes_subprocess_client": PipesSubprocessClient()},
)
