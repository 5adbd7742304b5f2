"""Build the static kedro-viz site of this project into its own folder (default ``viz-site/``).

``kedro viz build`` always writes to ``build/`` in the working directory, the folder where
setuptools (``kedro package``) also leaves its intermediate files; uploading ``build/`` would then
publish the package's sources with the site, and stale files of either would mix. This script
does what ``kedro viz build`` does (kedro-viz's own project loader and ``LocalDeployer``: the
API responses as JSON plus the web app's static files) but writes to a folder of its own, which
it replaces whole: it builds into a hidden sibling and renames that into place when complete.

The site opens on a default view that reads at a glance (see ``default_view``): the pipelines'
groups, collapsed, and the datasets one pipeline hands to another, without layer bands.
kedro-viz alone draws every free input and output of every group beside the groups (29 of the
41 datasets of ``__default__``) in a graph so tall that, fitted to a 1600×1000 window, it
opens at about a quarter of its size. These are defaults only: a browser keeps the view its
user last chose.

Usage, from the project root (``make viz-site`` runs it)::

    python scripts/build_viz_site.py [OUT] [--env ENV] [--include-previews]

The project is the working directory, as for ``kedro viz build``; a relative ``OUT`` is taken
relative to it. Serve the result with any static file server, e.g.
``python -m http.server -d viz-site``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec
from kedro.framework.startup import bootstrap_project
from kedro_viz.integrations.deployment.local_deployer import LocalDeployer
from kedro_viz.server import load_and_populate_data

DEFAULT_OUT = "viz-site"
# Layers whose datasets the default view leaves out even when one pipeline hands them to another:
# the training and scoring by-products (histories, EFM snapshots, training records, test
# predictions) that only the report reads. With them the view has 21 datasets, twice as wide.
DETAIL_LAYERS = frozenset({"model_output"})
# The kedro-viz app keeps its settings in the browser's localStorage under this key and reads
# them when it starts; MARK records which defaults were applied there (see default_view_script).
SETTINGS_KEY = "KedroViz"
MARK_KEY = "efm-seg-default-view"


class _FolderDeployer(LocalDeployer):
    """kedro-viz's ``LocalDeployer`` (what ``kedro viz build`` uses), writing to ``path``."""

    def __init__(self, path: Path):  # LocalDeployer.__init__ would create ./build
        self._path = path
        self._fs = fsspec.filesystem("file")


def default_view(main: dict[str, Any]) -> dict[str, Any]:
    """kedro-viz settings for the default view of the pipeline in ``main`` (``api/main``, the
    ``__default__`` pipeline's graph as kedro-viz serves it).

    kedro-viz draws a collapsed group per top-level namespace and, beside the groups, every
    dataset its tree puts at the root: each group's free inputs and outputs (a dataset is inside
    a group only when the group both writes and reads it). For this project that is every
    dataset passed between pipelines, but also the inputs no pipeline writes (``raw_dataset``,
    ``run_info``, each stage's ``training_state``) and the report's files. The default view
    keeps the datasets one group writes and another reads, less those of ``DETAIL_LAYERS``, and
    hides the others (the sidebar lists them, one click shows each again). Parameters stay hidden
    (kedro-viz's own default) and so do the layer bands, which would make the graph taller.
    kedro-viz keeps one set of hidden datasets for all pipelines: another pipeline's view starts
    with the same ones hidden.
    """
    tree = main.get("modular_pipelines") or {}
    layer = {node["id"]: node.get("layer") for node in main["nodes"]}
    root = tree.get("__root__", {}).get("children", [])
    groups = [tree[c["id"]] for c in root if c["type"] == "modularPipeline" and c["id"] in tree]

    def handed_over(dataset: str) -> bool:
        return any(
            dataset in a.get("outputs", []) and dataset in b.get("inputs", [])
            for a in groups
            for b in groups
            if a is not b
        )

    hidden = sorted(
        c["id"]
        for c in root
        if c["type"] == "data" and (not handed_over(c["id"]) or layer.get(c["id"]) in DETAIL_LAYERS)
    )
    return {
        "node": {"disabled": dict.fromkeys(hidden, True)},
        "nodeType": {"disabled": {"parameters": True}},
        "layer": {"visible": False},
        # kedro-viz's tour of new features would cover a quarter of the flowchart on a first visit
        "showFeatureHints": False,
    }


def default_view_script(settings: dict[str, Any]) -> str:
    """A ``<script>`` that writes ``settings`` into kedro-viz's stored settings before the app
    starts (classic scripts run before the app's module script), once per set of defaults: a
    browser that has them keeps whatever its user changed since; new defaults (a later build
    with other ones) are merged in once more."""
    payload = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    mark = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return f"""<script>
/* efm-seg: the site's default view (scripts/build_viz_site.py) */
(function () {{
  var settings = {payload};
  var merge = function (into, from) {{
    for (var key in from) {{
      var value = from[key];
      if (value && typeof value === "object" && into[key] && typeof into[key] === "object") {{
        merge(into[key], value);
      }} else {{
        into[key] = value;
      }}
    }}
    return into;
  }};
  try {{
    if (localStorage.getItem({json.dumps(MARK_KEY)}) === {json.dumps(mark)}) return;
    var stored = JSON.parse(localStorage.getItem({json.dumps(SETTINGS_KEY)}) || "{{}}");
    localStorage.setItem({json.dumps(SETTINGS_KEY)}, JSON.stringify(merge(stored, settings)));
    localStorage.setItem({json.dumps(MARK_KEY)}, {json.dumps(mark)});
  }} catch (error) {{
    console.warn("efm-seg default view not applied:", error);
  }}
}})();
</script>
"""


def write_default_view(site: Path) -> dict[str, Any]:
    """Put the default view of ``site``'s main pipeline into its pages (``index.html`` and the
    identical ``404.html``), where kedro-viz's deployer puts its own additions: before
    ``</head>``. Returns the settings."""
    settings = default_view(json.loads((site / "api" / "main").read_text(encoding="utf-8")))
    script = default_view_script(settings)
    for page in (site / "index.html", site / "404.html"):
        if page.is_file():
            html = page.read_text(encoding="utf-8")
            if "</head>" not in html:
                raise SystemExit(f"{page}: no </head> to put the default view before")
            page.write_text(html.replace("</head>", script + "</head>", 1), encoding="utf-8")
    return settings


def build_site(
    project: Path, out: Path, env: str | None = None, include_previews: bool = False
) -> Path:
    """Write the static site of ``project``'s pipelines to ``out`` (replaced whole).

    ``project`` must be the working directory: kedro-viz reads a few files (the run events
    under ``.viz/``, telemetry consent) relative to it, as ``kedro viz build`` does.
    """
    project, out = project.resolve(), out.resolve()
    if out == project or out in project.parents:
        raise SystemExit(f"refusing to replace {out}: it holds the project")
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "api" / "main").is_file())
    ):
        raise SystemExit(f"refusing to replace {out}: not empty and not a kedro-viz site")
    metadata = bootstrap_project(project)
    load_and_populate_data(project, env=env, package_name=metadata.package_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _FolderDeployer(staging).deploy(include_previews)
        write_default_view(staging)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the site from a web server
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default=DEFAULT_OUT, help="default: %(default)s")
    parser.add_argument("--env", help="Kedro environment (default: Kedro's, i.e. local)")
    parser.add_argument("--include-previews", action="store_true", help="include dataset previews")
    args = parser.parse_args(argv)
    project = Path.cwd()
    out = build_site(project, project / args.out, args.env, args.include_previews)
    print(f"kedro-viz static site written to {out}")


if __name__ == "__main__":
    main()
