"""Tasks: the pure rules of Polysync's orchestrator (issue 12), with no I/O.

A Task is a configured instance of a Job (pinned parameter values, schedules, dependencies, a
retry policy, a timeout, a priority and a concurrency cap); a TaskRun is one attempt chain of it.
The modules here decide *what* should happen; the store, the engine's scheduler loop and the
adapters (API, CLI, web) decide *when* and record it (docs/tasks.md).

- `states`: TaskRun statuses, trigger types and the allowed status changes.
- `model`: Task and TaskRun records, `check_task`, dispatch order and the concurrency cap.
- `lifecycle`: a TaskRun's attempt chain: start, end, retry, timeout, repair.
- `schedule`: cron + IANA time zone fire times across DST, previews and misfire policies.
- `retry`: retry policies, backoff delays and the Repair / Restart strategy.
- `dependencies`: edges with conditions, cycle refusal and the downstream decision.
- `mapping`: `{{upstream.<task>.<field>}}` references: parsing, checking and rendering.
"""
