# Cohorts: synthetic ones written by `calf synth`, real ones fetched by `calf download`.


localrules:
    synth,
    download,


# a Synapse download still to run needs the token: checked before any job starts, and
# passed to the job by name only (never written into a command line or log)
if synapse_download_pending():

    envvars:
        "SYNAPSE_AUTH_TOKEN",


rule synth:
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    log:
        f"{LOGS}/synth/{{dataset}}.log",
    wildcard_constraints:
        dataset="|".join(
            n for n, d in config["datasets"].items() if d["source"] == "synth"
        )
        or "(?!)",
    conda:
        "../envs/calf.yaml"
    params:
        synth=lambda wildcards: config["datasets"][wildcards.dataset]["synth"],
    shell:
        "calf synth --layout {params.synth[layout]} --preset {params.synth[preset]}"
        " --cases {params.synth[cases]} --shape {params.synth[shape][0]} {params.synth[shape][1]}"
        " {params.synth[shape][2]} --seed {params.synth[seed]} --out {output} > {log} 2>&1"


rule download:
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    log:
        f"{LOGS}/download/{{dataset}}.log",
    wildcard_constraints:
        dataset="|".join(
            n for n, d in config["datasets"].items() if d["source"] == "download"
        )
        or "(?!)",
    conda:
        "../envs/calf.yaml"
    params:
        adapter=lambda wildcards: config["datasets"][wildcards.dataset]["adapter"],
        route=lambda wildcards: " ".join(
            f"--{k} {v}"
            for k, v in config["datasets"][wildcards.dataset]["download"].items()
        ),
    shell:
        "calf download --dataset {params.adapter} {params.route} --out {output} > {log} 2>&1"
