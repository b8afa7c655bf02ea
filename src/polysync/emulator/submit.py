"""`jobs/runs/submit`: the settings of a one-time run, checked as the Jobs API checks them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.fields import malformed
from polysync.emulator.job_settings import validate_settings
from polysync.emulator.records import Job


def one_time_job(body: Mapping[str, Any], *, now_ms: int, creator: str) -> Job:
    """The job of a one-time run: id 0 (a one-time run has no saved job), named `run_name`
    ("Untitled" by default), with the body's `tasks`, `timeout_seconds`, `environments`,
    `git_source`, `queue` and `job_clusters`, and no per-job concurrency limit.

    Raises ApiError 400 `INVALID_PARAMETER_VALUE` / `MALFORMED_REQUEST` for a bad body, as
    `job_settings.validate_settings` and the compute checks of sdk-py `SubmitTask` say.
    """
    run_name = body.get("run_name")
    if run_name is not None and not isinstance(run_name, str):
        raise malformed("run_name", "string", run_name)
    tasks = body.get("tasks")
    if tasks is None:
        raise ApiError(400, INVALID_PARAMETER_VALUE, "Missing required field: tasks")
    settings: dict[str, Any] = {
        "name": run_name or "Untitled",
        "tasks": tasks,
        "max_concurrent_runs": 1000,
    }
    for key in ("timeout_seconds", "environments", "git_source", "queue", "job_clusters"):
        if body.get(key) is not None:
            settings[key] = body[key]
    clean, scripts = validate_settings(settings)
    _check_compute(clean)
    return Job(
        job_id=0,
        created_time_ms=now_ms,
        creator_user_name=creator,
        settings=clean,
        scripts=scripts,
    )


_CLUSTER_FIELDS = ("existing_cluster_id", "new_cluster", "job_cluster_key", "environment_key")


def _check_compute(settings: Mapping[str, Any]) -> None:
    """Compute of one-time run tasks (sdk-py `SubmitTask`): at most one of `existing_cluster_id`,
    `new_cluster`, `job_cluster_key`, `environment_key`; a `new_cluster` needs `spark_version` and a
    node type or instance pool; an `environment_key` must name one of `environments`."""
    environments = {
        e.get("environment_key") for e in settings.get("environments") or [] if isinstance(e, dict)
    }
    for task in settings.get("tasks", []):
        key = task["task_key"]
        chosen = [f for f in _CLUSTER_FIELDS if task.get(f) not in (None, "")]
        if len(chosen) > 1:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Task {key} sets more than one kind of compute ({', '.join(chosen)}); set only one.",
            )
        cluster = task.get("new_cluster")
        if cluster is not None:
            if not isinstance(cluster, dict):
                raise malformed("new_cluster", "object", cluster)
            if not cluster.get("spark_version"):
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    "Missing required field: new_cluster.spark_version",
                )
            if not (cluster.get("node_type_id") or cluster.get("instance_pool_id")):
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    f"Task {key}: new_cluster needs node_type_id or instance_pool_id.",
                )
        env_key = task.get("environment_key")
        if env_key is not None and env_key not in environments:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Task {key} references environment_key {env_key!r}, which is not defined in "
                "environments.",
            )
