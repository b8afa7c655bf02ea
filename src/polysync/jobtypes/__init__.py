"""Job types: plug-ins behind one small interface (discover, import, start, poll, cancel, run URL)."""
