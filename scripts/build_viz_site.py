"""Build the static kedro-viz site of this project into its own folder (default ``viz-site/``).

``kedro viz build`` always writes to ``build/`` in the working directory, the folder where
setuptools (``kedro package``) also leaves its intermediate files; uploading ``build/`` would then
publish the package's sources with the site, and stale files of either would mix. This script
does what ``kedro viz build`` does (kedro-viz's own project loader and ``LocalDeployer``: the
API responses as JSON plus the web app's static files) but writes to a folder of its own, which
it replaces whole: it builds into a hidden sibling and renames that into place when complete.

Usage, from the project root (``make viz-site`` runs it)::

    python scripts/build_viz_site.py [OUT] [--env ENV] [--include-previews]

The project is the working directory, as for ``kedro viz build``; a relative ``OUT`` is taken
relative to it. Serve the result with any static file server, e.g.
``python -m http.server -d viz-site``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import fsspec
from kedro.framework.startup import bootstrap_project
from kedro_viz.integrations.deployment.local_deployer import LocalDeployer
from kedro_viz.server import load_and_populate_data

DEFAULT_OUT = "viz-site"


class _FolderDeployer(LocalDeployer):
    """kedro-viz's ``LocalDeployer`` (what ``kedro viz build`` uses), writing to ``path``."""

    def __init__(self, path: Path):  # LocalDeployer.__init__ would create ./build
        self._path = path
        self._fs = fsspec.filesystem("file")


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
