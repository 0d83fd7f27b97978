#!/usr/bin/env bash
# The GPU check on a bare CUDA machine: python3 with a CUDA torch, this checkout, and the
# wheels benchmarks/gpu_wheels.sh put in .whl/ (MONAI, nibabel, scikit-learn, ...).
#
#   bash benchmarks/gpu.sh [OUT [gpu.py options...]]      (OUT default: benchmarks/results)
#
# Installs .whl/*.whl (when there) into /tmp/calf-site without an index or dependencies,
# puts it and the checkout on PYTHONPATH, prints the GPU, checks every import that
# benchmarks/gpu.py and `python -m calf train` need (one line naming a missing one, exit 2),
# then runs `benchmarks/gpu.py --device cuda --out OUT` (about 5 minutes on one H200).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-benchmarks/results}"
shift $(( $# > 0 ? 1 : 0 ))
py="${PYTHON:-python3}"
site=/tmp/calf-site

if compgen -G ".whl/*.whl" > /dev/null; then
    PIP_ROOT_USER_ACTION=ignore "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
        --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH="$site:$root${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "gpu.sh: no .whl/ here (benchmarks/gpu_wheels.sh makes it): using what $py has"
    export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
fi

if command -v nvidia-smi > /dev/null; then
    nvidia-smi -L
else
    echo "gpu.sh: nvidia-smi not found"
fi

"$py" - << 'EOF'
import importlib
import sys

needed = ("torch", "numpy", "pandas", "pyarrow", "scipy", "yaml", "monai", "nibabel",
          "sklearn", "tqdm", "calf")
for name in needed:
    try:
        importlib.import_module(name)
    except Exception as err:  # a missing module or one that does not load
        print(f"gpu.sh: cannot import {name} ({type(err).__name__}: {' '.join(str(err).split())}); "
              "run benchmarks/gpu_wheels.sh where PyPI is reachable and bring .whl/",
              file=sys.stderr)
        sys.exit(2)
import torch

if not torch.cuda.is_available():
    print(f"gpu.sh: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device",
          file=sys.stderr)
    sys.exit(2)
try:
    import cv2  # noqa: F401
except ImportError:
    print("gpu.sh: OpenCV missing: the contour statistic will be skipped "
          "(benchmarks/gpu_wheels.sh --contour adds it)")
print(f"gpu.sh: torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name()}")
EOF

exec "$py" benchmarks/gpu.py --device cuda --out "$out" "$@"
