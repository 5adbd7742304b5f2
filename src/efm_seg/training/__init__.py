"""Training: models, data, the trainer — plain PyTorch, no Kedro."""
