"""How the pipelines read in kedro-viz and group in Airflow: each pipeline is a namespace of its
name, nodes have names that read alone, and every persisted dataset sits in its layer."""

from __future__ import annotations

import re

import yaml
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT

GROUPED = (
    "ingestion", "preprocessing", "split", "baseline", "efm", "finetune", "baseline_equal",
    "evaluation",
)  # fmt: skip
LAYERS = {
    "01_raw": "raw",
    "02_intermediate": "intermediate",
    "05_model_input": "model_input",
    "06_models": "models",
    "07_model_output": "model_output",
    "08_reporting": "reporting",
}


def test_each_pipeline_is_a_namespace_of_its_name():
    bootstrap_project(PROJECT_ROOT)
    for name in (*GROUPED, "reporting", "predict", "export"):
        namespaces = {node.namespace.split(".")[0] for node in pipelines[name].nodes}
        assert namespaces == {name}, name
    # The datasets keep their catalog names (the namespace groups nodes only).
    assert "manifest" in pipelines["ingestion"].all_outputs()
    assert "split" in pipelines["split"].all_outputs()
    assert "report_html" in pipelines["reporting"].all_outputs()


def test_the_training_nodes_read_alone_and_are_tagged():
    bootstrap_project(PROJECT_ROOT)
    training = [n for n in pipelines["__default__"].nodes if "training" in n.tags]
    short = {n.namespace: n.name.rsplit(".", 1)[-1] for n in training}
    assert short == {
        "baseline": "train_baseline",
        "efm": "train_with_efm",
        "finetune": "finetune_with_efm",
        "baseline_equal": "train_baseline_equal",
    }
    evaluate = [n.name for n in pipelines["evaluation"].nodes]
    assert "evaluation.efm.evaluate_efm" in evaluate


def test_every_persisted_catalog_entry_is_in_the_layer_of_its_folder():
    for environment in ("base", "dubai", "loveda"):
        catalog = yaml.safe_load((PROJECT_ROOT / f"conf/{environment}/catalog.yml").read_text())
        for name, entry in catalog.items():
            if name.startswith("_") or entry.get("type") == "MemoryDataset":
                continue
            layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
            path = entry.get("filepath") or entry.get("path")
            folder = re.search(r"(0\d_[a-z_]+)/", path)
            expected = LAYERS[folder.group(1)] if folder else "raw"  # a raw folder elsewhere
            assert layer == expected, f"conf/{environment}/catalog.yml: {name}"
