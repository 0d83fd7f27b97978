#!/usr/bin/env bash
# Download into .whl/ (at the repository root) the wheels that benchmarks/gpu.py needs and a
# bare CUDA machine lacks: one whose python3 (CPython 3.12, manylinux x86_64) already has
# torch, numpy, pandas, pyarrow, scipy, matplotlib, psutil and pyyaml. Versions are those
# of this checkout's .venv. benchmarks/gpu.sh installs them there (no index, no deps).
#
#   bash benchmarks/gpu_wheels.sh [--contour]
#
# About 15 MB. --contour adds OpenCV for the contour statistic (61 MB more: more than the
# device tool carries, 64 MiB; without it gpu.py records the contour row as skipped).
# .whl/ is git-ignored: carry it to the GPU machine beside the checkout, never commit it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
pip_show=".venv/bin/pip"
[[ -x "$pip_show" ]] || { echo "gpu_wheels.sh: $root/.venv/bin/pip missing: build the venv first" >&2; exit 2; }

# what `python benchmarks/gpu.py` and `python -m calf train` import beyond the image:
# MONAI (the networks), nibabel (the test cohort's NIfTI), scikit-learn and its imports
# (calf.split), tqdm (calf.preprocess); OpenCV for the contour statistic
names=(monai nibabel scikit-learn joblib threadpoolctl narwhals cloudpickle tqdm)
case "${1:-}" in
    "") ;;
    --contour) names+=(opencv-python-headless) ;;
    *) echo "gpu_wheels.sh: unknown argument $1 (expected --contour)" >&2; exit 2 ;;
esac

mkdir -p .whl
for name in "${names[@]}"; do
    version="$("$pip_show" show "$name" 2>/dev/null | sed -n 's/^Version: //p')"
    if [[ -z "$version" ]]; then
        echo "gpu_wheels.sh: $name is not installed in .venv: cannot pin its version" >&2
        exit 2
    fi
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "$name==$version"
done
echo "gpu_wheels.sh: $(ls .whl/*.whl | wc -l) wheels, $(du -sh .whl | cut -f1) in $root/.whl"
