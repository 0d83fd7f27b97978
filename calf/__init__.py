"""CALF benchmark suite.

Kept light on purpose: ``import calf`` imports no torch, MONAI or pandas, so that the
hundreds of short workflow jobs start fast. Import the submodules you need
(``calf.losses``, ``calf.imbalance``, ...).
"""

__version__ = "0.1.0"
