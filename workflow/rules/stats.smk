# Significance tests of a study's losses from its per-case metrics (calf stats):
# paired Wilcoxon tests of each CALF loss against every baseline with Holm's correction,
# and the Friedman test with mean ranks, the Nemenyi post-hoc test and the critical difference.


localrules:
    stats,


rule stats:
    input:
        metrics=lambda wildcards: run_paths(wildcards.study, "metrics"),
    output:
        paired=report(
            f"{RESULTS}/stats/{{study}}/paired.csv",
            caption="../report/paired.rst",
            category="Significance tests",
            subcategory="{study}",
            labels={"study": "{study}", "table": "paired tests"},
        ),
        friedman=report(
            f"{RESULTS}/stats/{{study}}/friedman.csv",
            caption="../report/friedman.rst",
            category="Significance tests",
            subcategory="{study}",
            labels={"study": "{study}", "table": "Friedman tests"},
        ),
        ranks=report(
            f"{RESULTS}/stats/{{study}}/ranks.csv",
            caption="../report/ranks.rst",
            category="Significance tests",
            subcategory="{study}",
            labels={"study": "{study}", "table": "mean ranks"},
        ),
        nemenyi=report(
            f"{RESULTS}/stats/{{study}}/nemenyi.csv",
            caption="../report/nemenyi.rst",
            category="Significance tests",
            subcategory="{study}",
            labels={"study": "{study}", "table": "Nemenyi post-hoc"},
        ),
        json=f"{RESULTS}/stats/{{study}}/stats.json",
    log:
        f"{LOGS}/stats/{{study}}.log",
    conda:
        "../envs/calf.yaml"
    params:
        root=f"{RESULTS}/metrics",
        out=lambda wildcards: f"{RESULTS}/stats/{wildcards.study}",
        args=stats_args,
    shell:
        "calf stats --metrics-root {params.root:q} --study {wildcards.study:q}"
        " --out-dir {params.out:q} {params.args:q} {input.metrics:q} > {log:q} 2>&1"
