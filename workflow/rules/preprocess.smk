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
        modalities=lambda wildcards: " ".join(
            config["datasets"][wildcards.dataset]["modalities"]
        ),
        region=lambda wildcards: config["datasets"][wildcards.dataset]["region"],
        options=lambda wildcards: " ".join(
            f"--option {k}={v}"
            for k, v in config["datasets"][wildcards.dataset]["options"].items()
        ),
        p=config["preprocess"],
    shell:
        "calf preprocess --dataset {params.adapter} --root {input} --out {output}"
        " --modalities {params.modalities} {params.options} --size {params.p[size]}"
        " --scaling {params.p[scaling]} --mask-resize {params.p[mask_resize]}"
        " --region {params.region}"
        " --workers {threads} --quiet > {log} 2>&1"
