# The entry point: `snakemake` run from the repository root. The workflow itself is
# workflow/Snakefile (where the Snakemake workflow catalog looks for it).


include: "workflow/Snakefile"


# an included file's default target is not the including file's: name it again
workflow.default_target = "all"
