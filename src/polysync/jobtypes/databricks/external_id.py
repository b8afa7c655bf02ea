"""External Ids: the numeric Databricks Job Id of a Job, checked before any API call (D4)."""

from __future__ import annotations

import re

from polysync.domain.text import shown
from polysync.errors import InvalidExternalIdError, JobDeletedError

MAX_JOB_ID = 2**63 - 1
"""Job Ids are signed 64-bit integers (reference §4 `run_id`/`job_id`: int64)."""

_ERROR_PREFIX = "INVALID_PARAMETER_VALUE: job_id"
_REMEDY = "Re-import the job from the Platform editor."
# An explicit [0-9] rather than int() or str.isdigit(): those accept Unicode digits such as
# '٤٢', and int() also accepts a sign and underscores, none of which D4 allows.
_ASCII_DIGITS = re.compile(r"[0-9]+")


def parse_external_id(value: str) -> int:
    """The Job Id in an External Id: ASCII digits, whitespace around them ignored, 1..2**63-1.

    Leading zeros are accepted ("0042" is 42): they cannot name another job, and an id typed or
    pasted with them is still unambiguous. Signs, underscores, decimal points, exponents and
    non-ASCII digits are refused, as is anything outside the signed 64-bit range.
    """
    if not isinstance(value, str):
        raise _invalid(value, "it is not text")
    digits = value.strip()
    if not digits:
        raise _invalid(value, "it is empty")
    if _ASCII_DIGITS.fullmatch(digits) is None:
        raise _invalid(value, "it must contain only the digits 0-9")
    significant = digits.lstrip("0")
    # Compare lengths before int(): int() refuses strings over 4300 digits (CPython's limit).
    if len(significant) > len(str(MAX_JOB_ID)) or (significant and int(significant) > MAX_JOB_ID):
        raise _invalid(value, f"it is larger than the largest Job Id, {MAX_JOB_ID}")
    if not significant:
        raise _invalid(value, "Job Ids start at 1")
    return int(significant)


def format_external_id(job_id: int) -> str:
    """The External Id stored for a Databricks job: its Job Id in canonical decimal."""
    return str(job_id)


def job_deleted_error(job_id: int) -> JobDeletedError:
    """The D4 error for a job Databricks says is gone (400 "Job N does not exist." or 404)."""
    return JobDeletedError(
        f"{_ERROR_PREFIX}: Databricks job {job_id} does not exist (the Job was deleted in "
        f"Databricks). {_REMEDY}"
    )


def _invalid(value: object, reason: str) -> InvalidExternalIdError:
    return InvalidExternalIdError(
        f"{_ERROR_PREFIX}: the External Id {shown(value)} is not a valid numeric Job Id ({reason}; "
        f"expected a whole number from 1 to {MAX_JOB_ID}, such as 42). {_REMEDY}"
    )
