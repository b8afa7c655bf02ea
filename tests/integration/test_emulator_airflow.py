"""Airflow's DatabricksRunNowOperator(deferrable=True) monitors a run on the emulator to SUCCESS.

Installing Airflow takes minutes and ~500 MB, so this test is marked `slow` and runs only with
POLYSYNC_TEST_AIRFLOW=1, or when an Airflow interpreter is already there (POLYSYNC_AIRFLOW_PYTHON,
or the venv below exists): then it takes seconds, and CI runs it. It uses the interpreter named by POLYSYNC_AIRFLOW_PYTHON, or creates a
venv (POLYSYNC_AIRFLOW_VENV, default ~/.cache/polysync/airflow-venv) with
apache-airflow-providers-databricks 7.x. The driver (airflow/run_now_deferrable.py) runs the
operator as Airflow does: execute() starts the run and defers, the trigger's run() polls
`GET jobs/runs/get` with a JSON body (aiohttp) until the run ends, execute_complete() judges it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.types import Receive, Scope, Send

from polysync.emulator.serving import run_in_thread
from tests.conftest import make_harness, make_spec

DRIVER = Path(__file__).parent / "airflow" / "run_now_deferrable.py"
PROVIDER = "apache-airflow-providers-databricks>=7.23,<8"
DEFAULT_VENV = Path.home() / ".cache/polysync/airflow-venv"


def airflow_at_hand() -> bool:
    """Asked for, or an Airflow interpreter is already there (then the test takes seconds)."""
    return (
        os.environ.get("POLYSYNC_TEST_AIRFLOW") == "1"
        or bool(os.environ.get("POLYSYNC_AIRFLOW_PYTHON"))
        or (Path(os.environ.get("POLYSYNC_AIRFLOW_VENV", DEFAULT_VENV)) / "bin" / "python").exists()
    )


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not airflow_at_hand(),
        reason="installs Apache Airflow; set POLYSYNC_TEST_AIRFLOW=1 (or POLYSYNC_AIRFLOW_PYTHON)",
    ),
]


def airflow_python() -> str:
    given = os.environ.get("POLYSYNC_AIRFLOW_PYTHON")
    if given:
        return given
    venv = Path(os.environ.get("POLYSYNC_AIRFLOW_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PROVIDER], check=True, timeout=1200
        )
    return str(python)


@pytest.mark.timeout(1500)
def test_deferrable_run_now_operator_sees_success() -> None:
    python = airflow_python()
    harness = make_harness(make_spec(), served=True)
    job = harness.state.create_job(
        {
            "name": "workflow",
            "parameters": [{"name": "env", "default": "prod"}],
            "tasks": [
                {"task_key": "a", "notebook_task": {"notebook_path": "/a"}},
                {
                    "task_key": "b",
                    "depends_on": [{"task_key": "a"}],
                    "notebook_task": {"notebook_path": "/b"},
                },
            ],
        }
    )

    async def every_poll_moves_time(scope: Scope, receive: Receive, send: Send) -> None:
        # Each runs/get answered moves emulated time 10 s on: the trigger sees the run progress
        # without anyone waiting for time to pass.
        await harness.app(scope, receive, send)
        if scope["type"] == "http" and scope["path"].endswith("/jobs/runs/get"):
            harness.clock.advance(10)

    base_url, stop = run_in_thread(every_poll_moves_time)
    try:
        connection = {
            "conn_type": "databricks",
            "host": "127.0.0.1",
            "port": int(base_url.rsplit(":", 1)[1]),
            "schema": "http",
            "password": harness.token,
        }
        env = {**os.environ, "AIRFLOW_CONN_DATABRICKS_DEFAULT": json.dumps(connection)}
        done = subprocess.run(
            [python, str(DRIVER), str(job.job_id)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        stop()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["deferred"] is True
    assert result["verdict"] == "success"
    assert json.loads(result["event"]["run_state"])["result_state"] == "SUCCESS"
    run = harness.state.runs[result["run_id"]]
    assert run.st.result_state == "SUCCESS"
    assert [p["value"] for p in run.job_parameters] == ["dev"]
    polls = [r for r in harness.app.emulator.stats.recent() if r.path.endswith("jobs/runs/get")]
    # The trigger's polls carry run_id in a JSON body, not in the query string.
    assert any(r.query == "" and r.status == 200 for r in polls)
    assert all(r.status == 200 for r in polls)
