# Cohorts: synthetic ones written by `calf synth`, real ones fetched by `calf download`.


localrules:
    synth,
    download,
    crosswalk,


# a Synapse download still to run gets the token by name only (never written into a
# command line or log); without one, the job says how to get it (a plan needs none)
if synapse_download_pending():

    envvars:
        SYNAPSE_TOKEN_ENV,


rule synth:
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    log:
        f"{LOGS}/synth/{{dataset}}.log",
    wildcard_constraints:
        dataset=_names(studies.datasets_by_source(config, "synth")) or "(?!)",
    conda:
        "../envs/calf.yaml"
    params:
        args=lambda wildcards: studies.synth_args(config, wildcards.dataset),
    shell:
        "calf synth {params.args:q} --out {output:q} > {log:q} 2>&1"


rule download:
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    log:
        f"{LOGS}/download/{{dataset}}.log",
    wildcard_constraints:
        dataset=_names(studies.datasets_by_source(config, "download")) or "(?!)",
    conda:
        "../envs/calf.yaml"
    params:
        adapter=lambda wildcards: config["datasets"][wildcards.dataset]["adapter"],
        route=lambda wildcards: studies.download_args(config, wildcards.dataset),
    run:
        # the URL (its query may hold a passcode, and a shell would split it at a '&') goes
        # to calf download in its environment, not in the command Snakemake prints and logs
        shell(
            "calf download --dataset {params.adapter:q} {params.route:q} --out {output:q}"
            " > {log:q} 2>&1",
            additional_envvars=download_env(wildcards),
        )


# the published files that link subjects found in two releases (studies' crosswalks in
# <resources_dir>/crosswalk/); one without a public download explains where to get it
rule crosswalk:
    output:
        f"{RESOURCES}/crosswalk/{{file}}",
    log:
        f"{LOGS}/download/crosswalk/{{file}}.log",
    wildcard_constraints:
        file=_names(studies.crosswalk_downloads(config)) or "(?!)",
    conda:
        "../envs/calf.yaml"
    shell:
        "calf download --crosswalk {wildcards.file:q} --out {output:q} > {log:q} 2>&1"
