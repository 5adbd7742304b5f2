"""The Kedro layer: the config loader, the custom datasets, the hooks (one per job), deployment
and the warning filters.

Everything that knows about Kedro lives here. The library below it (efm_seg.data, .models,
.training, ...) never imports it; ``lint-imports`` holds that rule (docs/architecture.md).
"""
