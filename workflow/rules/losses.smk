# One rule per loss. A rule named train_<name> adds the loss <name> to every study
# (unless a study lists its losses): it trains on every dataset, model and fold, and its
# runs are evaluated, tested against CALF, tabulated, plotted and synced to MLflow like
# the others.
#
# To add a baseline, write one rule here, e.g.:
#
#   use rule train_template as train_gdice with:
#       wildcard_constraints:
#           loss="gdice",
#       params:
#           loss="monai.losses.GeneralizedDiceLoss",
#           loss_kwargs={"sigmoid": True},
#
# `loss` is a name registered in calf.losses or an import path; `loss_kwargs` go to it.


use rule train_template as train_bce with:
    wildcard_constraints:
        loss="bce",
    params:
        loss="bce",


use rule train_template as train_dice with:
    wildcard_constraints:
        loss="dice",
    params:
        loss="dice",


use rule train_template as train_iou with:
    wildcard_constraints:
        loss="iou",
    params:
        loss="iou",


use rule train_template as train_tversky with:
    wildcard_constraints:
        loss="tversky",
    params:
        loss="tversky",


use rule train_template as train_focal with:
    wildcard_constraints:
        loss="focal",
    params:
        loss="focal",


use rule train_template as train_combo with:
    wildcard_constraints:
        loss="combo",
    params:
        loss="combo",


# CALF's tumour areas: config calf.area (pixels: the suite's; contour: the authors').
# CALF in batch scope, as the authors' code runs it: S and K of every mini-batch
use rule train_template as train_calf with:
    wildcard_constraints:
        loss="calf",
    params:
        loss="calf",
        loss_kwargs={"scope": "batch", "area": config["calf"]["area"]},


# CALF in dataset scope, the paper's wording: S and K of the training set's profile
use rule train_template as train_calf_dataset with:
    wildcard_constraints:
        loss="calf_dataset",
    params:
        loss="calf",
        loss_kwargs={"scope": "dataset", "area": config["calf"]["area"]},


use rule train_template as train_calf_region with:
    wildcard_constraints:
        loss="calf_region",
    params:
        loss="calf_region",
        loss_kwargs={"grid": 4, "area": config["calf"]["area"]},
