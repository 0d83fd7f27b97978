# Patient-grouped folds per study and dataset, with each patient's subject (one per group
# of crosswalk-linked patients, the statistics' unit), then the training slices of each fold.


rule split_folds:
    input:
        stores=study_stores,
        crosswalks=crosswalk_files,
    output:
        splits=f"{RESULTS}/splits/{{study}}/{{dataset}}/splits_final.json",
        subjects=f"{RESULTS}/splits/{{study}}/{{dataset}}/subjects.csv",
    log:
        f"{LOGS}/split/{{study}}/{{dataset}}.log",
    conda:
        "../envs/calf.yaml"
    params:
        stores=store_args,
        args=split_args,
    shell:
        "calf split folds {params.stores} {params.args} --out {output.splits}"
        " --subjects {output.subjects} > {log} 2>&1"


rule split_select:
    input:
        stores=study_stores,
        splits=f"{RESULTS}/splits/{{study}}/{{dataset}}/splits_final.json",
    output:
        f"{RESULTS}/splits/{{study}}/{{dataset}}/{{selection}}.csv",
    log:
        f"{LOGS}/split/{{study}}/{{dataset}}/{{selection}}.log",
    wildcard_constraints:
        selection=r"(ratio-[0-9.]+/)?fold[0-9]+",
    conda:
        "../envs/calf.yaml"
    params:
        stores=store_args,
        args=selection_args,
    shell:
        "calf split select {params.stores} --splits {input.splits} {params.args}"
        " --out {output} > {log} 2>&1"
