"""examples/dagster/events_daily.py under real Dagster: `materialize` runs the asset with the real
`PipesSubprocessClient` against the emulator; the instance's event log holds one materialization per partition, with
its partition key and bq-backfill's metadata — for one key, and for a range of keys in one run."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter, PipesSubprocessClient, materialize

from conftest import EXAMPLES


def load_example():
    spec = importlib.util.spec_from_file_location("events_daily_dagster", EXAMPLES / "dagster" / "events_daily.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run(emulator, workdir, monkeypatch):
    monkeypatch.setenv("BQ_BACKFILL", str(workdir / "dist" / "bq-backfill"))
    monkeypatch.setenv("BQ_BACKFILL_TASK", str(workdir / "tasks" / "events_daily.json"))
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator.host)
    example = load_example()
    instance = DagsterInstance.ephemeral()

    def go(**kwargs):
        result = materialize(
            [example.events_daily],
            instance=instance,
            resources={"pipes_subprocess_client": PipesSubprocessClient()},
            **kwargs,
        )
        assert result.success
        records = instance.get_event_records(
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION, asset_key=AssetKey("events_daily"))
        )
        return [r.event_log_entry.dagster_event.event_specific_data.materialization for r in records]

    return go


def by_partition(materializations) -> dict:
    return {m.partition: m.metadata for m in materializations}


def test_one_partition_key_is_one_materialization_with_bigquerys_figures(run, emulator):
    mats = run(partition_key="2024-01-15")
    assert [m.partition for m in mats] == ["2024-01-15"]
    md = mats[0].metadata
    assert md["partition"].value == "2024-01-15"
    assert md["partition_id"].value == "20240115"
    assert md["rows_written"].value > 0
    assert md["bytes_processed"].value > 0
    assert md["bq_job_id"].value.startswith("bqb_events_daily_20240115")
    assert md["bq_job_url"].url.startswith("https://console.cloud.google.com/bigquery?project=demo-project&j=bq:")
    assert md["attempt"].value == 1
    assert md["duration_seconds"].value >= 0
    assert emulator.daily_totals() == emulator.raw_totals("2024-01-15", "2024-01-16")


def test_a_key_range_in_one_run_is_one_materialization_per_partition(run, emulator):
    mats = run(
        tags={
            "dagster/asset_partition_range_start": "2024-01-10",
            "dagster/asset_partition_range_end": "2024-01-12",
        }
    )
    got = by_partition(mats)
    assert sorted(got) == ["2024-01-10", "2024-01-11", "2024-01-12"], [m.partition for m in mats]
    assert len(mats) == 3, "one materialization per partition, no duplicates"
    assert len({md["bq_job_id"].value for md in got.values()}) == 3
    totals = emulator.daily_totals()
    assert sorted(totals) == ["2024-01-10", "2024-01-11", "2024-01-12"]
    assert totals == emulator.raw_totals("2024-01-10", "2024-01-13")
    for day, md in got.items():
        assert md["rows_written"].value > 0, day
