# NIfTI volumes -> one slice store per dataset.


rule preprocess:
    input:
        lambda wildcards: dataset_root(wildcards.dataset),
    output:
        directory(f"{RESULTS}/stores/{{dataset}}"),
    log:
        f"{LOGS}/preprocess/{{dataset}}.log",
    benchmark:
        f"{BENCH}/preprocess/{{dataset}}.tsv"
    conda:
        "../envs/calf.yaml"
    threads: config["preprocess"]["workers"]
    params:
        adapter=lambda wildcards: config["datasets"][wildcards.dataset]["adapter"],
        args=lambda wildcards: studies.preprocess_args(config, wildcards.dataset),
    shell:
        "calf preprocess --dataset {params.adapter:q} --root {input:q} --out {output:q}"
        " {params.args:q} --workers {threads} --quiet > {log:q} 2>&1"
