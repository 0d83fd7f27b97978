# The end of the benchmark: MLflow (statistics, tables and the report join here).


localrules:
    mlflow_sync,


rule mlflow_sync:
    input:
        metrics=lambda wildcards: run_paths(wildcards.study, "metrics"),
        previous=previous_sync,
    output:
        f"{RESULTS}/mlflow/{{study}}.synced.json",
    log:
        f"{LOGS}/mlflow/{{study}}.log",
    conda:
        "../envs/calf.yaml"
    params:
        uri=tracking_uri(),
        runs=f"{RESULTS}/runs",
        metrics=f"{RESULTS}/metrics",
        profiles=f"{RESULTS}/profiles",
    shell:
        "calf mlflow-sync --study {wildcards.study} --runs-root {params.runs}"
        " --metrics-root {params.metrics} --profiles-root {params.profiles}"
        " --tracking-uri {params.uri} --stamp {output} > {log} 2>&1"
