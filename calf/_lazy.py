"""Importing MONAI without the optional dependencies it loads eagerly and the suite never
uses through it.

``import monai`` loads every MONAI subpackage, and with them optional dependencies that it
finds installed: MLflow (for MONAI's MLflow handler), ``scipy.signal`` (ultrasound
confidence maps), ``matplotlib.pyplot`` (notebook plotting) and scikit-learn (an embedding
metric) - about 2.5 s of the 4.5 s that ``import monai`` costs here, in every one of the
workflow's hundreds of short jobs.
``import_monai`` hides those that are not loaded yet while MONAI imports, so MONAI's
``optional_import`` records them as absent (only those MONAI features become unusable in
the process), then unhides them: the suite's own ``import mlflow`` or
``import matplotlib.pyplot`` later works as usual. Measured by ``benchmarks/startup.py``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

HIDDEN_FROM_MONAI = ("mlflow", "scipy.signal", "matplotlib.pyplot", "sklearn")


@contextlib.contextmanager
def hidden(names: tuple[str, ...]) -> Iterator[list[str]]:
    """Make ``import NAME`` raise ImportError inside the block, for modules not loaded yet."""
    names = [name for name in names if name not in sys.modules]
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield names
    finally:
        for name in names:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def import_monai():
    """``import monai``, without loading ``HIDDEN_FROM_MONAI`` on its behalf."""
    if "monai" not in sys.modules:
        with hidden(HIDDEN_FROM_MONAI):
            import monai  # noqa: F401
    return sys.modules["monai"]
