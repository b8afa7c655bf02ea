"""The Databricks Notebook job type: one notebook run as a one-time run (`jobs/runs/submit`, D11).

External Id = the notebook's workspace path. Discovery walks `workspace/list` from the platform's
Default Notebook Path; the parameters are the notebook's widgets (`widgets.parse_widgets` over its
`workspace/export` SOURCE), all Strings, sent in `notebook_task.base_parameters`. The compute
comes from the platform's attributes (`notebook_compute`). Status, cancel and run URL are those
of every Jobs API run (`runs.JobsApiRuns`, D6, D7, D10). No Output parameters.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from polysync.domain.limits import MAX_EXTERNAL_ID_CHARS
from polysync.domain.models import (
    DataType,
    ImportedJob,
    Parameter,
    ParameterDiff,
)
from polysync.domain.parameters import resolve_run_parameters, sync_job
from polysync.domain.records import Platform
from polysync.domain.text import shown
from polysync.errors import (
    ConfigError,
    DatabricksNotFoundError,
    InvalidExternalIdError,
    JobDeletedError,
    ParameterValueError,
    PolysyncError,
    UsageError,
)
from polysync.jobtypes.base import (
    MAX_IDEMPOTENCY_TOKEN,
    DiscoveredJob,
    StartedRun,
    StartRequest,
    bounded_gather,
    import_each,
)
from polysync.jobtypes.databricks.runs import JobsApiRuns
from polysync.jobtypes.databricks.status import trusted_run_url
from polysync.jobtypes.databricks.widgets import WidgetKind, parse_widgets

NOTEBOOK = "Databricks Notebook"
WIDGET_SOURCE = "dbutils.widgets"
"""A parameter's source: `dbutils.widgets.<kind>` (text, dropdown, combobox, multiselect)."""
TASK_KEY = "notebook"
MAX_PATH_CHARS = MAX_EXTERNAL_ID_CHARS
MAX_NOTEBOOKS = 10_000
"""Discovery stops listing past this many notebooks (narrow the Default Notebook Path)."""
MAX_DEPTH = 64

# The platform attributes (Platform.attributes) this job type reads.
DEFAULT_NOTEBOOK_PATH = "default_notebook_path"
SPARK_VERSION = "spark_version"
NODE_TYPE_ID = "node_type_id"
NUM_WORKERS = "num_workers"
INSTANCE_POOL_ID = "instance_pool_id"
SERVERLESS = "serverless"
EXISTING_CLUSTER_ID = "existing_cluster_id"


def platform_attributes(platform: Platform | None) -> Mapping[str, str]:
    return platform.attributes if platform is not None else {}


def notebook_compute(platform: Platform | None) -> dict[str, Any]:
    """The compute fields of the notebook task, from the platform (first that is set):

    1. an existing cluster: the platform's Cluster Id (or attribute `existing_cluster_id`);
    2. a new job cluster: attributes `spark_version` with `node_type_id` or `instance_pool_id`,
       and `num_workers` (default 1);
    3. serverless: attribute `serverless` = true (no cluster in the task).

    ConfigError naming the missing attribute when none is set or one is incomplete."""
    attributes = platform_attributes(platform)
    name = platform.name if platform is not None else "?"
    cluster_id = (platform.cluster_id if platform is not None else None) or attributes.get(
        EXISTING_CLUSTER_ID
    )
    if cluster_id and cluster_id.strip():
        return {"existing_cluster_id": cluster_id.strip()}
    spark_version = attributes.get(SPARK_VERSION, "").strip()
    node_type = attributes.get(NODE_TYPE_ID, "").strip()
    pool = attributes.get(INSTANCE_POOL_ID, "").strip()
    if spark_version or node_type or pool:
        if not spark_version:
            raise ConfigError(
                f"Platform {name!r} has no attribute {SPARK_VERSION!r}: a new job cluster for "
                f"Databricks Notebook runs needs one (e.g. 15.4.x-scala2.12). Set it with "
                f"`polysync platform attributes {name} {SPARK_VERSION}=...`."
            )
        if not (node_type or pool):
            raise ConfigError(
                f"Platform {name!r} has {SPARK_VERSION!r} but neither {NODE_TYPE_ID!r} nor "
                f"{INSTANCE_POOL_ID!r}: a new job cluster needs one of them (e.g. "
                f"{NODE_TYPE_ID}=Standard_DS3_v2)."
            )
        workers_text = attributes.get(NUM_WORKERS, "1").strip()
        if not workers_text.isdigit() or not workers_text.isascii() or int(workers_text) > 100_000:
            raise ConfigError(
                f"Platform {name!r} attribute {NUM_WORKERS!r} must be a whole number of workers "
                f"(0 to 100000); got {shown(workers_text)}."
            )
        cluster: dict[str, Any] = {"spark_version": spark_version, "num_workers": int(workers_text)}
        if pool:
            cluster["instance_pool_id"] = pool
        else:
            cluster["node_type_id"] = node_type
        return {"new_cluster": cluster}
    if attributes.get(SERVERLESS, "").strip().lower() == "true":
        return {}
    raise ConfigError(
        f"Platform {name!r} has no compute for Databricks Notebook runs: set its Cluster Id (an "
        f"existing cluster), or the attributes {SPARK_VERSION!r} and {NODE_TYPE_ID!r} (or "
        f"{INSTANCE_POOL_ID!r}) for a new job cluster, or {SERVERLESS}=true."
    )


def check_notebook_path(value: object) -> str:
    """A notebook's workspace path: absolute, at most 4096 characters, no control characters,
    no `.`/`..` segments; trailing slashes dropped. InvalidExternalIdError otherwise."""
    if not isinstance(value, str):
        raise _invalid_path(value, "it is not text")
    path = value.strip()
    if not path.startswith("/"):
        raise _invalid_path(value, "it must be an absolute workspace path starting with '/'")
    if len(path) > MAX_PATH_CHARS:
        raise _invalid_path(value, f"it is longer than {MAX_PATH_CHARS} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise _invalid_path(value, "it contains control characters")
    path = path.rstrip("/")
    if not path:
        raise _invalid_path(value, "it is the workspace root, a folder")
    if any(segment in (".", "..") for segment in path.split("/")[1:]):
        raise _invalid_path(value, "it contains '.' or '..' segments")
    return path


def _invalid_path(value: object, reason: str) -> InvalidExternalIdError:
    return InvalidExternalIdError(
        f"INVALID_PARAMETER_VALUE: notebook_path: the External Id {shown(value)} is not a "
        f"notebook's workspace path ({reason}; expected e.g. /Shared/reports/daily). Re-import "
        f"the notebook from the Platform editor."
    )


def _deleted(path: str) -> JobDeletedError:
    return JobDeletedError(
        f"RESOURCE_DOES_NOT_EXIST: notebook {path!r} does not exist (it was deleted or moved "
        f"in Databricks). Re-import the notebook from the Platform editor."
    )


class DatabricksNotebookJobType(JobsApiRuns):
    """Databricks Notebook on one workspace: one-time runs of one notebook (D11)."""

    name = NOTEBOOK

    # ------------------------------------------------------------------ discovery
    async def discover(self) -> Sequence[DiscoveredJob]:
        """Every NOTEBOOK under the Default Notebook Path (attribute `default_notebook_path`,
        default "/"), listed folder by folder (each level's folders concurrently)."""
        root = platform_attributes(self.platform).get(DEFAULT_NOTEBOOK_PATH, "/").strip() or "/"
        found: list[DiscoveredJob] = []
        folders = [root]
        seen: set[str] = set()
        for _ in range(MAX_DEPTH):
            if not folders or len(found) >= MAX_NOTEBOOKS:
                break
            listings = await bounded_gather(partial(self._list, folder) for folder in folders)
            folders = []
            for objects in listings:
                for entry in objects:
                    path = entry.get("path")
                    if not isinstance(path, str) or path in seen:
                        continue
                    seen.add(path)
                    kind = entry.get("object_type")
                    if kind in {"DIRECTORY", "REPO"}:
                        folders.append(path)
                    elif kind == "NOTEBOOK" and len(found) < MAX_NOTEBOOKS:
                        found.append(_discovered(entry))
        return found

    async def _list(self, folder: str) -> list[dict[str, Any]]:
        try:
            return await self.client.list_workspace(folder)
        except DatabricksNotFoundError:
            return []  # deleted while we walked (or a wrong Default Notebook Path: nothing there)

    # ------------------------------------------------------------------ import and sync
    def validate_external_id(self, external_id: str) -> str:
        return check_notebook_path(external_id)

    async def import_job(self, external_id: str) -> ImportedJob:
        """get-status (it must be a NOTEBOOK), then export SOURCE and parse its widgets."""
        path = check_notebook_path(external_id)
        try:
            status = await self.client.get_workspace_status(path)
            if status.get("object_type") != "NOTEBOOK":
                kind = status.get("object_type")
                raise UsageError(
                    f"{path!r} is a {shown(kind) if not isinstance(kind, str) else kind}, not a "
                    f"notebook: the Databricks Notebook job type runs notebooks only."
                )
            exported = await self.client.export_workspace(path)
        except DatabricksNotFoundError as exc:
            raise _deleted(path) from exc
        source = _decode_source(exported.get("content"))
        language = status.get("language")
        return ImportedJob(
            external_id=path,
            name=posixpath.basename(path) or path,
            kind=NOTEBOOK,
            task_count=1,
            description=f"{language.title() if isinstance(language, str) else 'A'} notebook "
            f"at {path}",
            tags={"language": language} if isinstance(language, str) else {},
            task_keys=(),
            parameters=tuple(
                Parameter(
                    name=widget.name,
                    data_type=DataType.STRING,  # widget values are strings (D11)
                    default=widget.default,
                    source=f"{WIDGET_SOURCE}.{widget.kind}",
                    choices=widget.choices,
                )
                for widget in parse_widgets(source)
                if widget.name.strip()
            ),
        )

    async def import_jobs(self, external_ids: Iterable[str]) -> list[ImportedJob | PolysyncError]:
        return await import_each(self.import_job, external_ids)

    async def sync_parameters(self, job: ImportedJob) -> tuple[ImportedJob, ParameterDiff]:
        return sync_job(job, await self.import_job(job.external_id))

    # ------------------------------------------------------------------ start
    def build_start_request(self, job: ImportedJob, overrides: Mapping[str, str]) -> StartRequest:
        """runs/submit's body: one notebook task with base_parameters (strings) and the
        platform's compute. Dropdown values must be one of its choices; each of a multiselect's
        comma-separated values too (when the choices are known)."""
        path = check_notebook_path(job.external_id)
        parameters = resolve_run_parameters(job.parameters, overrides)
        by_name = {p.name: p for p in job.parameters if p.is_job_level}
        for name, value in parameters.items():
            _check_choice(by_name[name], value)
        task: dict[str, Any] = {
            "task_key": TASK_KEY,
            "notebook_task": {
                "notebook_path": path,
                "source": "WORKSPACE",
                "base_parameters": dict(parameters),
            },
            **notebook_compute(self.platform),
        }
        run_name = f"Polysync: {job.name or posixpath.basename(path)}"[:256]
        return StartRequest(
            parameters_sent=parameters, body={"run_name": run_name, "tasks": [task]}
        )

    async def start(
        self, job: ImportedJob, overrides: Mapping[str, str], *, idempotency_token: str
    ) -> StartedRun:
        """runs/submit with the token (D8, D11); the run URL from the first runs/get (D7)."""
        request = self.build_start_request(job, overrides)
        if not 0 < len(idempotency_token) <= MAX_IDEMPOTENCY_TOKEN:
            raise ValueError(f"idempotency token must be 1..{MAX_IDEMPOTENCY_TOKEN} characters")
        answer = await self.client.submit_run(request.body, idempotency_token=idempotency_token)
        run_id = answer.get("run_id")
        if not isinstance(run_id, int) or isinstance(run_id, bool) or run_id <= 0:
            raise UsageError(f"jobs/runs/submit answered no run id ({shown(run_id)}).")
        try:
            url = trusted_run_url(
                (await self.client.get_run_json(run_id)).get("run_page_url"), self.workspace_url
            ) or self.run_url(str(run_id))
        except PolysyncError:
            url = self.run_url(str(run_id))  # the first poll brings the real one
        return StartedRun(
            run_id=str(run_id),
            run_page_url=url,
            parameters_sent=request.parameters_sent,
            idempotency_token=idempotency_token,
        )


def _check_choice(parameter: Parameter, value: str) -> None:
    if not parameter.choices:
        return
    kind = parameter.source.rsplit(".", 1)[-1]
    if kind == WidgetKind.DROPDOWN:
        chosen = [value]
    elif kind == WidgetKind.MULTISELECT:
        chosen = [item.strip() for item in value.split(",")]
    else:
        return  # a combobox takes any value
    for item in chosen:
        if item not in parameter.choices:
            allowed = ", ".join(repr(choice) for choice in parameter.choices[:20])
            raise ParameterValueError(
                f"Parameter {parameter.name!r} is a {kind} widget: its value must be "
                f"{'one of' if kind == WidgetKind.DROPDOWN else 'a comma-separated list of'} "
                f"{allowed}; got {shown(value)}. Pick from its choices, or Sync Parameters if "
                f"the notebook's choices changed."
            )


def _decode_source(content: object) -> str:
    """The notebook's source text from export's base64 `content` ('' when it cannot be read:
    a notebook without readable widgets has no parameters, it does not fail the import)."""
    if not isinstance(content, str):
        return ""
    try:
        return base64.b64decode(content, validate=False).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return ""


def _discovered(entry: Mapping[str, Any]) -> DiscoveredJob:
    path = str(entry.get("path"))
    language = entry.get("language")
    created = entry.get("created_at")
    return DiscoveredJob(
        external_id=path,
        name=posixpath.basename(path) or path,
        kind=NOTEBOOK,
        task_count=1,
        tags={"language": language} if isinstance(language, str) else {},
        creator=None,
        created_time_ms=created
        if isinstance(created, int) and not isinstance(created, bool)
        else None,
    )
