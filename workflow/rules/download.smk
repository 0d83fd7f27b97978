# Cohorts: synthetic ones written by `calf synth`, real ones fetched by `calf download`.


localrules:
    synth,
    download,
    crosswalk,


# a Synapse download still to run gets the token by name only (never written into a
# command line or log); without one, the job says how to get it (a plan needs none)
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


# the published files that link subjects found in two releases (studies' crosswalks in
# <resources_dir>/crosswalk/); one without a public download explains where to get it
rule crosswalk:
    output:
        f"{RESOURCES}/crosswalk/{{file}}",
    log:
        f"{LOGS}/download/crosswalk/{{file}}.log",
    wildcard_constraints:
        file="|".join(re.escape(f) for f in crosswalk_downloads()) or "(?!)",
    conda:
        "../envs/calf.yaml"
    shell:
        "calf download --crosswalk {wildcards.file} --out {output} > {log} 2>&1"
