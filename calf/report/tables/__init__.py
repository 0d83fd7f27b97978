"""The comparison tables of ``calf report``, each written as CSV, Markdown, LaTeX and HTML.

- ``write_summary_tables``: per dataset, model and ratio, every loss's six metrics (mean ± sd,
  median [q1, q3]), the best bold, significance markers from the paired statistics
  (``summary``, markers from ``markers``);
- ``write_paper_table``: the authors' published Dice beside the suite's batch-pooled Dice
  under their pooled protocol (``paper``);
- ``collect_costs`` and ``write_cost_table``: what each loss's training runs cost (``cost``).

A table is a ``document.Document`` (blocks of cells, format-free), written as text by
``render`` and onto disk, every file of a table together or none, by ``io``.
"""

from calf.report.tables.cost import collect_costs, write_cost_table
from calf.report.tables.paper import write_paper_table
from calf.report.tables.summary import write_summary_tables

__all__ = ["collect_costs", "write_cost_table", "write_paper_table", "write_summary_tables"]
