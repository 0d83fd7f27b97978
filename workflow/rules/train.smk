# Training: one template rule; every loss is a rule derived from it in losses.smk.
#
# The declared output is a marker that Snakemake touches once `calf train` succeeded.
# Snakemake deletes the outputs of a failed job; the run's own files (run.json,
# checkpoint.pt, epochs.csv) are not outputs, so they survive a preemption (exit 75) and
# the re-run resumes from the checkpoint.


rule train_template:
    input:
        stores=study_stores,
        train=training_set,
        profile=training_profile,
    output:
        done=touch(RUN_DONE),
    log:
        f"{LOGS}/train/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/train/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}.tsv"
    wildcard_constraints:
        loss="(?!)",
    conda:
        "../envs/calf.yaml"
    threads: train_threads()
    resources:
        **gpu_resources(),
    params:
        # a loss rule sets loss (a name in calf.losses or an import path) and loss_kwargs;
        # loss_args turns them into --loss NAME --loss-kwargs JSON
        loss=None,
        loss_kwargs={},
        loss_args=loss_args,
        stores=store_args,
        model=model_args,
        training=training_args,
        out=lambda wildcards, output: os.path.dirname(output.done),
    shell:
        "calf train {params.stores:q} --train-slices {input.train:q}"
        " --profile {input.profile:q} {params.model:q} {params.loss_args:q}"
        " {params.training:q} --threads {threads} --out {params.out:q} > {log:q} 2>&1"
