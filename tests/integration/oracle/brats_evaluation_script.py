"""Run inside the oracle venv (brats-evaluation 0.0.10): score NIfTI pairs, write JSON.

Usage: python brats_evaluation_script.py MANIFEST.json OUT.json

MANIFEST is a JSON list of {"name", "pred", "truth"} (NIfTI paths, labels in {0, 1, 2, 3}).
For each pair and the whole-tumour region ``wt`` (labels 1, 2, 3) of the package's
bundled ``gli`` config, OUT holds two results of panoptica's metrics:

- ``files``: ``brats_evaluation.evaluate_single_exam`` on the two paths, as the package's
  CLI scores a case;
- ``arrays``: ``Panoptica_Evaluator.evaluate`` on the arrays nibabel reads, with
  ``voxelspacing`` the NIfTI zooms (the spacing along the array axes).

Each is a dict of the keys in KEYS (None where the package reports nothing, e.g. a
precision of 0 / 0); NaN and inf are written as JSON ``NaN`` / ``Infinity``.
"""

from __future__ import annotations

import json
import sys
import warnings

KEYS = (
    "global_bin_dsc", "global_bin_hd95", "global_bin_nsd", "sq_dsc", "pq_dsc", "sq_hd95",
    "sq_nsd", "rq", "prec", "rec", "tp", "fp", "fn", "n_ref_instances", "n_pred_instances",
)


def _plain(value):
    return None if value is None else float(value)


def main(manifest_path: str, out_path: str) -> None:
    warnings.simplefilter("ignore")
    import nibabel as nib
    import numpy as np
    from brats_evaluation import config_path, evaluate_single_exam
    from panoptica import Panoptica_Evaluator

    evaluator = Panoptica_Evaluator.load_from_config(str(config_path("gli")))
    with open(manifest_path) as f:
        pairs = json.load(f)
    out = {}
    for pair in pairs:
        by_files = evaluate_single_exam(pair["pred"], pair["truth"], pair["name"], evaluator)
        if "error" in by_files:
            raise SystemExit(f"{pair['name']}: brats-evaluation failed: {by_files['error']}")
        pred_img, truth_img = nib.load(pair["pred"]), nib.load(pair["truth"])
        spacing = tuple(float(z) for z in truth_img.header.get_zooms())
        by_arrays = evaluator.evaluate(
            np.asarray(pred_img.dataobj).astype(np.uint8),
            np.asarray(truth_img.dataobj).astype(np.uint8),
            voxelspacing=spacing,
        )["wt"].to_dict()
        out[pair["name"]] = {
            "files": {k: _plain(by_files["wt"].get(k)) for k in KEYS},
            "arrays": {k: _plain(by_arrays.get(k)) for k in KEYS},
            "spacing": spacing,
        }
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
