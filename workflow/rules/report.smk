# The end of the benchmark: comparison tables, figures, results/report/README.md (calf
# report) and the MLflow import. `snakemake --report results/report.html` gathers every
# output marked report() below and in stats.smk, with its caption from workflow/report/;
# its front page is the answer of every study (front_page.rst, written by report_readme)
# above workflow/report/workflow.rst.


report: report_front_page()


# (each study's figure rule, report_figures_<study>, is local too: localrule: True)
localrules:
    report_tables,
    report_cost,
    report_paper,
    report_readme,
    mlflow_sync,


rule report_tables:
    input:
        metrics=lambda wildcards: run_paths(wildcards.study, "metrics"),
        paired=f"{RESULTS}/stats/{{study}}/paired.csv",
    output:
        html=report(
            f"{RESULTS}/report/{{study}}/summary.html",
            caption="../report/summary.rst",
            category="Tables",
            subcategory="{study}",
            labels={"study": "{study}", "table": "metrics per loss"},
        ),
        csv=f"{RESULTS}/report/{{study}}/summary.csv",
        md=f"{RESULTS}/report/{{study}}/summary.md",
        tex=f"{RESULTS}/report/{{study}}/summary.tex",
    log:
        f"{LOGS}/report/{{study}}_tables.log",
    conda:
        "../envs/calf.yaml"
    params:
        root=f"{RESULTS}/metrics",
        prefix=lambda wildcards: f"{RESULTS}/report/{wildcards.study}/summary",
        args=table_args,
    shell:
        "calf report tables --metrics-root {params.root:q} --study {wildcards.study:q}"
        " --paired {input.paired:q} --out-prefix {params.prefix:q} {params.args:q}"
        " {input.metrics:q} > {log:q} 2>&1"


# What each loss's runs cost, from their run.json (and, for runs from before run.json held
# `cost`, epochs.csv). Both are written by the training job, which touches train.done last:
# they are not its declared outputs (they must survive a failed attempt), so the markers
# stand for them here.
rule report_cost:
    input:
        runs=lambda wildcards: run_paths(wildcards.study, "runs"),
    output:
        html=report(
            f"{RESULTS}/report/{{study}}/cost.html",
            caption="../report/cost.rst",
            category="Tables",
            subcategory="{study}",
            labels={"study": "{study}", "table": "training cost"},
        ),
        csv=f"{RESULTS}/report/{{study}}/cost.csv",
        md=f"{RESULTS}/report/{{study}}/cost.md",
    log:
        f"{LOGS}/report/{{study}}_cost.log",
    conda:
        "../envs/calf.yaml"
    params:
        root=f"{RESULTS}/runs",
        prefix=lambda wildcards, output: output.csv.removesuffix(".csv"),
        runs=lambda wildcards, input: [os.path.dirname(p) for p in input.runs],
    shell:
        "calf report cost --runs-root {params.root:q} --study {wildcards.study:q}"
        " --out-prefix {params.prefix:q} {params.runs:q} > {log:q} 2>&1"


rule report_paper:
    input:
        metrics=pooled_metrics,
    output:
        html=report(
            f"{RESULTS}/report/paper_vs_suite.html",
            caption="../report/paper.rst",
            category="Tables",
            subcategory="paper vs suite",
            labels={"study": "all", "table": "paper vs suite"},
        ),
        csv=f"{RESULTS}/report/paper_vs_suite.csv",
        md=f"{RESULTS}/report/paper_vs_suite.md",
        tex=f"{RESULTS}/report/paper_vs_suite.tex",
    log:
        f"{LOGS}/report/paper_vs_suite.log",
    conda:
        "../envs/calf.yaml"
    params:
        root=f"{RESULTS}/metrics",
        prefix=lambda wildcards, output: output.csv.removesuffix(".csv"),
    shell:
        "calf report paper --metrics-root {params.root:q} --out-prefix {params.prefix:q}"
        " {input.metrics:q} > {log:q} 2>&1"


for study in config["studies"]:

    rule:
        name:
            f"report_figures_{study}"
        input:
            metrics=run_paths(study, "metrics"),
            # the runs' epochs.csv, read for the branch shares (train.done stands for the
            # run's files, written by the job that touches it last)
            runs=run_paths(study, "runs"),
            profiles=profile_paths(study),
            stats=f"{RESULTS}/stats/{study}/stats.json",
            analysis=f"{RESULTS}/analysis/{study}/analysis.json",
        output:
            **figure_report_outputs(study),
        log:
            f"{LOGS}/report/{{study}}_figures.log",
        wildcard_constraints:
            study=re.escape(study),
        localrule: True
        conda:
            "../envs/calf.yaml"
        params:
            root=lambda wildcards: f"{RESULTS}/metrics",
            runs=lambda wildcards: f"{RESULTS}/runs",
            stats=lambda wildcards, input: Path(input.stats).parent,
            analysis=lambda wildcards, input: Path(input.analysis).parent,
            out=lambda wildcards, output: Path(output.dice_png).parent,
            profiles=lambda wildcards, input: [
                word for p in input.profiles for word in ("--profile", p)
            ],
        shell:
            "calf report figures --metrics-root {params.root:q} --study {wildcards.study:q}"
            " --runs-root {params.runs:q} --stats-dir {params.stats:q} {params.profiles:q}"
            " --analysis-dir {params.analysis:q}"
            " --out-dir {params.out:q} {input.metrics:q} > {log:q} 2>&1"


rule report_readme:
    input:
        files=report_files,
        # every study's cost table, shown in the README (its CSV and HTML beside it)
        cost=[f"{RESULTS}/report/{study}/cost.md" for study in config["studies"]],
        description=REPORT_DESCRIPTION,
    output:
        readme=f"{RESULTS}/report/README.md",
        front_page=f"{RESULTS}/report/front_page.rst",
    log:
        f"{LOGS}/report/readme.log",
    conda:
        "../envs/calf.yaml"
    params:
        report=lambda wildcards, output: Path(output.readme).parent,
        stats=f"{RESULTS}/stats",
        analysis=f"{RESULTS}/analysis",
        studies=studies.readme_study_args(config),
    shell:
        "calf report readme --report-dir {params.report:q} --stats-root {params.stats:q}"
        " --analysis-root {params.analysis:q}"
        " {params.studies:q} --cost --out {output.readme:q}"
        " --front-page {output.front_page:q} --description {input.description:q}"
        " > {log:q} 2>&1"


rule mlflow_sync:
    input:
        # what calf mlflow-sync reads below its roots: every run's folder (train.done
        # stands for its files), metrics and training-set profile
        runs=lambda wildcards: run_paths(wildcards.study, "runs"),
        metrics=lambda wildcards: run_paths(wildcards.study, "metrics"),
        profiles=lambda wildcards: profile_paths(wildcards.study),
        previous=previous_sync,
    output:
        f"{RESULTS}/mlflow/{{study}}.synced.json",
    log:
        f"{LOGS}/mlflow/{{study}}.log",
    conda:
        "../envs/calf.yaml"
    params:
        uri=studies.tracking_uri(config),
        runs=f"{RESULTS}/runs",
        metrics=f"{RESULTS}/metrics",
        profiles=f"{RESULTS}/profiles",
    shell:
        "calf mlflow-sync --study {wildcards.study:q} --runs-root {params.runs:q}"
        " --metrics-root {params.metrics:q} --profiles-root {params.profiles:q}"
        " --tracking-uri {params.uri:q} --stamp {output:q} > {log:q} 2>&1"
