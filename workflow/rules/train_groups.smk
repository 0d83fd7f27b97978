# training.group_losses: one job trains every loss of a (study, dataset, model, fold), one
# run after another in one process (`calf train --run LOSS KWARGS RUN ...`), instead of
# one job per run. Each run keeps its own directory, checkpoint and resumption; only the
# start-up (Python, torch, MONAI: seconds) is paid once per job, which is most of a tiny
# CPU run's time. The losses are still one rule each (losses.smk): these rules take the
# loss and its arguments from each loss rule's params, so a new loss rule joins the group,
# and take precedence (ruleorder) over the per-loss rules for the same train.done files.

if config["training"]["group_losses"]:
    for study in config["studies"]:

        rule:
            name:
                f"grouped_training_{study}"
            input:
                stores=study_stores,
                train=training_set,
                profile=training_profile,
            output:
                [touch(p) for p in group_markers(study)],
            log:
                f"{LOGS}/train/{{study}}/{{dataset}}/{{model}}/all_losses/{{variant}}.log",
            benchmark:
                f"{BENCH}/train/{{study}}/{{dataset}}/{{model}}/all_losses/{{variant}}.tsv"
            wildcard_constraints:
                study=re.escape(study),
            conda:
                "../envs/calf.yaml"
            threads: train_threads()
            resources:
                **gpu_resources(),
            params:
                stores=store_args,
                model=model_args,
                training=training_args,
                runs=group_run_args,
            shell:
                "calf train {params.stores:q} --train-slices {input.train:q}"
                " --profile {input.profile:q} {params.model:q} {params.training:q}"
                " --threads {threads} {params.runs:q} > {log:q} 2>&1"

        for loss in study_losses(study):
            workflow.ruleorder(f"grouped_training_{study}", f"train_{loss}")
