# Per-case metrics of every trained model on its fold's validation cases.


rule evaluate:
    input:
        run=f"{RESULTS}/runs/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}/run.json",
        stores=study_stores,
        splits=f"{RESULTS}/splits/{{study}}/{{dataset}}/splits_final.json",
    output:
        csv=f"{RESULTS}/metrics/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}.csv",
        json=f"{RESULTS}/metrics/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}.json",
        slices=f"{RESULTS}/metrics/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}_slices.csv",
        overlays=directory(
            f"{RESULTS}/metrics/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}_overlays"
        ),
    log:
        f"{LOGS}/evaluate/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}.tsv"
    wildcard_constraints:
        variant=VARIANT_RE,
    conda:
        "../envs/calf.yaml"
    resources:
        **gpu_resources(),
    params:
        stores=store_args,
        args=evaluation_args,
    shell:
        "calf evaluate --run $(dirname {input.run}) {params.stores} --splits {input.splits}"
        " {params.args} --out {output.csv} > {log} 2>&1"
