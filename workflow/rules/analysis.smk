# Where CALF helps (calf analyse): CALF against each baseline per tumour-size class, the
# change of its advantage with tumour volume, the training sets' imbalance against its
# advantage, the ranking's bootstrap stability and significance map, and the verdicts under
# every empty-mask preset and metric. A job of its own (not local): at the paper's scale its
# mixed models take minutes, spread over the job's threads (calf analyse --jobs).


rule analysis:
    input:
        metrics=lambda wildcards: run_paths(wildcards.study, "metrics"),
        profiles=lambda wildcards: profile_paths(wildcards.study),
    output:
        size_classes=report(
            f"{RESULTS}/analysis/{{study}}/size_classes.csv",
            caption="../report/size_classes.rst",
            category="Where CALF helps",
            subcategory="{study}",
            labels={"study": "{study}", "table": "by tumour size"},
        ),
        interaction=report(
            f"{RESULTS}/analysis/{{study}}/interaction.csv",
            caption="../report/interaction.rst",
            category="Where CALF helps",
            subcategory="{study}",
            labels={"study": "{study}", "table": "advantage per doubling of volume"},
        ),
        rank_stability=report(
            f"{RESULTS}/analysis/{{study}}/rank_stability.csv",
            caption="../report/rank_stability.rst",
            category="Where CALF helps",
            subcategory="{study}",
            labels={"study": "{study}", "table": "ranking stability"},
        ),
        verdict_changes=report(
            f"{RESULTS}/analysis/{{study}}/verdict_changes.csv",
            caption="../report/verdict_changes.rst",
            category="Where CALF helps",
            subcategory="{study}",
            labels={
                "study": "{study}",
                "table": "verdicts that depend on the convention",
            },
        ),
        json=f"{RESULTS}/analysis/{{study}}/analysis.json",
    log:
        f"{LOGS}/analysis/{{study}}.log",
    conda:
        "../envs/calf.yaml"
    threads: 4
    params:
        root=f"{RESULTS}/metrics",
        profiles_root=f"{RESULTS}/profiles",
        out=lambda wildcards: f"{RESULTS}/analysis/{wildcards.study}",
        profiles=lambda wildcards, input: [
            word for p in input.profiles for word in ("--profile", p)
        ],
        args=analysis_args,
    shell:
        "calf analyse --metrics-root {params.root:q} --study {wildcards.study:q}"
        " --out-dir {params.out:q} --profiles-root {params.profiles_root:q}"
        " --jobs {threads} {params.profiles:q} {params.args:q} {input.metrics:q}"
        " > {log:q} 2>&1"
