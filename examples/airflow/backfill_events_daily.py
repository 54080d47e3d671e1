"""Airflow DAG: one bq-backfill run per data interval.

The descriptor is passed with --task (Airflow 3 hands the task its
supervisor's socket as stdin, which bq-backfill refuses rather than hang on).
The last line of output — always `run_finished` — becomes the XCom.
"""
from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

with DAG(
    dag_id="backfill_events_daily",
    start_date=datetime(2024, 1, 1),
    schedule="@daily",
    catchup=True,
    max_active_runs=1,  # the run lease refuses overlapping runs anyway (exit 73)
    default_args={"retries": 3, "retry_delay": timedelta(minutes=5)},
) as dag:
    BashOperator(
        task_id="events_daily",
        bash_command=(
            "bq-backfill run --task /opt/airflow/tasks/events_daily.json "
            "--start {{ data_interval_start | ds }} --end {{ data_interval_end | ds }} "
            # Stop cleanly (exit 75) before Airflow's timeout would kill it.
            "--max-runtime 3300"
        ),
        append_env=True,  # keep GOOGLE_APPLICATION_CREDENTIALS etc.
        execution_timeout=timedelta(hours=1),
        do_xcom_push=True,
    )
