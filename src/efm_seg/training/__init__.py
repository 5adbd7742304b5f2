"""Training one stage: its recipe (config), the stage with its lineage, the trainer, resume and
data-parallel launch — plain PyTorch, no Kedro."""
