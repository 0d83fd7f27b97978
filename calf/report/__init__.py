"""Comparison tables and figures of a study's results (``calf report``)."""
