"""Kedro pipelines, one package each; registered by find_pipelines."""
