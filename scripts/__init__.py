"""Developer scripts (run as `python scripts/<name>.py`, mostly through nox)."""
