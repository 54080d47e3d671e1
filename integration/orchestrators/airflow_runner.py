"""Runs one DAG of examples/airflow/events_daily.py under the Airflow installed in this interpreter's venv, with
`dag.test()` (a real DagRun in the metadata database of $AIRFLOW_HOME, the real BashOperator), and prints one JSON
line: the Airflow version, the task's final state, its `return_value` XCom and its log lines.

Usage: python airflow_runner.py DAG_ID LOGICAL_DATE [RUN_CONF_JSON]"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import airflow

DAG_FILE = Path(__file__).resolve().parents[2] / "examples" / "airflow" / "events_daily.py"


def load_dags():
    spec = importlib.util.spec_from_file_location("events_daily_dags", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {d.dag_id: d for d in (module.incremental, module.history)}


def xcom(dag_id: str, run_id: str, task_id: str):
    """The task's `return_value` XCom, read from the metadata database."""
    from airflow.utils.session import create_session

    try:  # Airflow 3
        from airflow.models.xcom import XComModel as XCom
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom
    with create_session() as session:
        row = (
            session.query(XCom)
            .filter(XCom.dag_id == dag_id, XCom.run_id == run_id, XCom.task_id == task_id, XCom.key == "return_value")
            .one_or_none()
        )
        if row is None:
            return None
        value = row.value
        if isinstance(value, (bytes, bytearray)):
            value = value.decode()
        # Airflow 3 stores the JSON-serialised value; Airflow 2's XCom deserialises on read.
        return json.loads(value) if isinstance(value, str) and value.startswith('"') else value


def main() -> None:
    dag_id, logical = sys.argv[1], datetime.fromisoformat(sys.argv[2]).replace(tzinfo=timezone.utc)
    conf = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    dag = load_dags()[dag_id]
    if airflow.__version__.startswith("2."):
        dr = dag.test(execution_date=logical, run_conf=conf)
    else:
        dr = dag.test(logical_date=logical, run_conf=conf)
    (task_id,) = dag.task_ids
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dr.get_task_instances()}
    print(
        json.dumps(
            {
                "airflow": airflow.__version__,
                "run_id": dr.run_id,
                "state": states[task_id],
                "xcom": xcom(dag_id, dr.run_id, task_id),
            }
        )
    )


if __name__ == "__main__":
    main()
