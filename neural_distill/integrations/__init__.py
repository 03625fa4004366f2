"""Integrations with trainers users already have. Each module imports its framework itself:
importing this package imports none."""
