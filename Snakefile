# The CALF benchmark: synth/download -> preprocess -> split -> profile -> train ->
# evaluate -> stats -> report -> mlflow-sync. See README.md and config/README.md.


# the embedded demo, unless --configfile names another config (which then replaces it
# rather than being merged into it)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/losses.smk"
include: "workflow/rules/train_groups.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/report.smk"


_check_studies()


rule all:
    default_target: True
    input:
        all_targets,
