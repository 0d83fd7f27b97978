# Patient-grouped folds per study and dataset, with each patient's subject (one per group
# of crosswalk-linked patients, the statistics' unit), then the training slices of each fold.


rule split_folds:
    input:
        stores=study_stores,
        crosswalks=crosswalk_files,
    output:
        splits=f"{SPLITS}/{SPLITS_FILE}",
        subjects=f"{SPLITS}/{layout.SUBJECTS_FILE}",
    log:
        f"{LOGS}/split/{{study}}/{{dataset}}.log",
    conda:
        "../envs/calf.yaml"
    params:
        stores=store_args,
        args=lambda wildcards: studies.split_args(config, wildcards.study),
    shell:
        "calf split folds {params.stores:q} {params.args:q} --out {output.splits:q}"
        " --subjects {output.subjects:q} > {log:q} 2>&1"


rule split_select:
    input:
        stores=study_stores,
        splits=f"{SPLITS}/{SPLITS_FILE}",
    output:
        f"{SPLITS}/{{selection}}.csv",
    log:
        f"{LOGS}/split/{{study}}/{{dataset}}/{{selection}}.log",
    conda:
        "../envs/calf.yaml"
    params:
        stores=store_args,
        args=lambda wildcards: studies.selection_args(config, wildcards.selection),
    shell:
        "calf split select {params.stores:q} --splits {input.splits:q} {params.args:q}"
        " --out {output:q} > {log:q} 2>&1"
