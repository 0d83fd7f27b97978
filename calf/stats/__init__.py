"""Significance tests across losses from the per-case metric CSVs (``calf stats``)."""
