"""The comparison tables of ``calf report``, each written as CSV, Markdown, LaTeX and HTML.

- ``write_summary_tables``: per dataset, model and ratio, every loss's six metrics (mean ± sd,
  median [q1, q3]), the best bold, significance markers from the paired statistics
  (``calf.report.tables_summary``).
- ``write_paper_table``: the authors' published Dice beside the suite's batch-pooled Dice
  under their pooled protocol (``calf.report.tables_paper``).
"""

from calf.report.tables_paper import write_paper_table
from calf.report.tables_summary import write_summary_tables

__all__ = ["write_paper_table", "write_summary_tables"]
