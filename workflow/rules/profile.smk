# The imbalance profile (S, K, CALF branch) of every training set, with the CALF losses'
# area definition (config calf.area), so that CALF in dataset scope reads its S and K.


rule profile:
    input:
        stores=study_stores,
        train=f"{RESULTS}/splits/{{study}}/{{dataset}}/{{selection}}.csv",
    output:
        json=f"{RESULTS}/profiles/{{study}}/{{dataset}}/{{selection}}.json",
        figure=f"{RESULTS}/profiles/{{study}}/{{dataset}}/{{selection}}.png",
    log:
        f"{LOGS}/profile/{{study}}/{{dataset}}/{{selection}}.log",
    wildcard_constraints:
        selection=r"(ratio-[0-9.]+/)?fold[0-9]+",
    conda:
        "../envs/calf.yaml"
    params:
        stores=store_args,
        area=config["calf"]["area"],
        context=lambda wildcards: (
            f"--dataset {wildcards.dataset} --fold {parse_variant(wildcards.selection)['fold']}"
            f" --ratio {parse_variant(wildcards.selection)['ratio']}"
        ),
    shell:
        "calf profile {params.stores} --train-slices {input.train} --area {params.area}"
        " {params.context} --out {output.json} --figure {output.figure} > {log} 2>&1"
