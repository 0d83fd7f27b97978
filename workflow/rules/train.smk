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
        touch(
            f"{RESULTS}/runs/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}/train.done"
        ),
    log:
        f"{LOGS}/train/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/train/{{study}}/{{dataset}}/{{model}}/{{loss}}/{{variant}}.tsv"
    wildcard_constraints:
        loss="(?!)",
        variant=VARIANT_RE,
    conda:
        "../envs/calf.yaml"
    threads: train_threads()
    resources:
        **gpu_resources(),
    params:
        loss=None,
        loss_kwargs={},
        stores=store_args,
        model=model_args,
        training=training_args,
    shell:
        "calf train {params.stores} --train-slices {input.train} --profile {input.profile}"
        " {params.model} --loss {params.loss} --loss-kwargs {params.loss_kwargs:q}"
        " {params.training} --threads {threads} --out $(dirname {output}) > {log} 2>&1"
