"""The project's Kedro hooks, one per job (settings.py registers them)."""
