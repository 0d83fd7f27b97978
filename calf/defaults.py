"""Default values that the CLI, the Python API and the workflow's config schema share.

Each is defined here once; ``argparse`` defaults and function signatures import it, and a
test checks that ``workflow/schemas/config.schema.yaml`` states the same values.
"""

from __future__ import annotations

# the authors' seed (their code seeds everything with it): folds, ratio filtering,
# training and the bootstrap
SEED = 12345
# the significance level of every test and of the critical-difference diagram
ALPHA = 0.05
