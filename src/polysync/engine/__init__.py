"""The run engine: dispatcher (start runs once), monitor (one shared poller), reconcile on start-up."""
