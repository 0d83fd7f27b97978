# The imbalance profile (S, K, CALF branch) of every training set, with the CALF losses'
# area definition (config calf.area), so that CALF in dataset scope reads its S and K.


rule profile:
    input:
        stores=study_stores,
        train=f"{SPLITS}/{{selection}}.csv",
    output:
        json=f"{PROFILES}/{{selection}}.json",
        figure=f"{PROFILES}/{{selection}}.png",
    log:
        f"{LOGS}/profile/{{study}}/{{dataset}}/{{selection}}.log",
    conda:
        "../envs/calf.yaml"
    params:
        stores=store_args,
        args=lambda wildcards: studies.profile_args(
            config, wildcards.dataset, wildcards.selection
        ),
    shell:
        "calf profile {params.stores:q} --train-slices {input.train:q} {params.args:q}"
        " --out {output.json:q} --figure {output.figure:q} > {log:q} 2>&1"
