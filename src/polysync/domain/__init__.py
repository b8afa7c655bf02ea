"""The domain: frozen records and the rules every job type shares (Platform, Job, Parameter, Run
with an opaque string RunId, RunStatus, RunEvent), with no I/O and no provider's wire format."""
