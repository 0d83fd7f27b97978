# Per-case metrics of every trained model on its fold's validation cases. One job
# evaluates every loss of a (study, dataset, model, fold): one process start-up, one
# model import, instead of one per run. Rules are made per study, as studies differ in
# their losses.

for study in config["studies"]:

    rule:
        name:
            f"evaluate_{study}"
        input:
            runs=evaluation_runs,
            stores=study_stores,
            splits=f"{SPLITS}/{SPLITS_FILE}",
            subjects=f"{SPLITS}/{layout.SUBJECTS_FILE}",
        output:
            csv=evaluation_outputs(study, ".csv"),
            json=evaluation_outputs(study, ".json"),
            slices=evaluation_outputs(study, "_slices.csv"),
            overlays=[directory(p) for p in evaluation_outputs(study, "_overlays")],
        log:
            f"{LOGS}/evaluate/{{study}}/{{dataset}}/{{model}}/{{variant}}.log",
        benchmark:
            f"{BENCH}/evaluate/{{study}}/{{dataset}}/{{model}}/{{variant}}.tsv"
        wildcard_constraints:
            study=re.escape(study),
        conda:
            "../envs/calf.yaml"
        resources:
            **gpu_resources(),
        params:
            stores=store_args,
            pairs=evaluation_pairs,
            args=evaluation_args,
        shell:
            "calf evaluate {params.pairs:q} {params.stores:q} --splits {input.splits:q}"
            " --subjects {input.subjects:q} {params.args:q} > {log:q} 2>&1"
