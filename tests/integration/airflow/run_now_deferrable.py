"""Run inside a venv with apache-airflow-providers-databricks: DatabricksRunNowOperator(deferrable=True)
against the emulator, as Airflow runs it: execute() starts the run and defers; the trigger's run()
then monitors it (GET jobs/runs/get with a JSON body, via aiohttp) until it ends; execute_complete()
judges the event. Prints one JSON line: the run id, the trigger's event and the verdict.

Usage: python run_now_deferrable.py <job_id> (the connection comes from AIRFLOW_CONN_DATABRICKS_DEFAULT)
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from unittest import mock


def main() -> None:
    from airflow.exceptions import TaskDeferred
    from airflow.providers.databricks.operators.databricks import DatabricksRunNowOperator

    job_id = int(sys.argv[1])
    operator = DatabricksRunNowOperator(
        task_id="run_workflow",
        job_id=job_id,
        job_parameters={"env": "dev"},
        deferrable=True,
        polling_period_seconds=1,
        databricks_retry_limit=3,
        databricks_retry_delay=1,
    )
    context: dict[str, Any] = {"ti": mock.MagicMock()}
    try:
        operator.execute(context)
    except TaskDeferred as deferred:
        trigger = deferred.trigger
        method = deferred.method_name
    else:
        print(json.dumps({"deferred": False}))
        return

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload
        return None

    payload = asyncio.run(first_event())
    verdict = "success"
    try:
        getattr(operator, method)(context, payload)
    except Exception as exc:  # the operator raises on an unsuccessful run
        verdict = f"failed: {exc}"
    print(
        json.dumps(
            {"deferred": True, "run_id": operator.run_id, "event": payload, "verdict": verdict},
            default=str,
        )
    )


if __name__ == "__main__":
    main()
