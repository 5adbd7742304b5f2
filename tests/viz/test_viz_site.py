"""The static kedro-viz site (``make viz-site``) renders every pipeline in headless Chromium.

The site is built in a throw-away copy of the project with ``scripts/build_viz_site.py`` (what
``make viz-site`` runs: ``kedro viz build``'s loader and deployer, writing to ``viz-site/``
instead of ``build/``), served by ``http.server`` on 127.0.0.1 and opened in Debian's
``chromium`` through its ``chromedriver`` (Selenium; no browser is ever downloaded).
``scripts/install-test-tools.sh`` installs both; ``make test`` runs it first.

The expected names come from the project's own pipeline registry: every registered pipeline
must be offered by the pipeline selector, and every namespace of the default pipeline (each
pipeline's nodes live in a namespace of its name) must label a group in the default flowchart.

The default view (what a first visit shows, in the test's 1600×1000 window) must read at a
glance: the groups and, between them, only datasets that one pipeline writes and another reads
(no parameter, no node outside a group, none of the inputs nobody writes or the report's files),
with enough of them to show how every group gets its data and hands on its own, drawn at a
zoom where their labels can be read.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kedro.framework.startup import bootstrap_project
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import PROJECT_ROOT, make_project

pytestmark = pytest.mark.slow

BUILD_SCRIPT = PROJECT_ROOT / "scripts" / "build_viz_site.py"
INSTALL_SCRIPT = PROJECT_ROOT / "scripts" / "install-test-tools.sh"
SITE = "viz-site"
SELECTOR = "[data-test='kedro-pipeline-selector']"
FLOWCHART = "svg.pipeline-flowchart__graph"
GROUP_LABELS = f"{FLOWCHART} .pipeline-node--modularPipeline text"
NODE_LABELS = f"{FLOWCHART} .pipeline-node text"
DATA_LABELS = f"{FLOWCHART} .pipeline-node--data text"
ZOOM_LEVEL = ".pipeline-minimap-toolbar__scale"
# Readable in a 1600×1000 screenshot: kedro-viz fits the whole graph in the window, and without
# the project's default view it opened at 26 % with 4 px labels (29 datasets beside the groups).
MIN_ZOOM_PERCENT = 40
MIN_LABEL_PX = 7
RENDER_TIMEOUT = 60  # seconds; the flowchart appears within a few on an idle machine


def pretty(name: str) -> str:
    """kedro-viz's "pretty name" of a namespace or pipeline (``data_science`` → ``Data Science``),
    shown instead of the raw name when that setting is on."""
    return " ".join(part.capitalize() for part in name.replace("-", " ").replace("_", " ").split())


def browser_tools() -> tuple[str, str]:
    """Debian's chromium and chromedriver, installed by the project's script when missing (as
    ``make test`` does first); the test is skipped only when they are absent and cannot be."""

    def find() -> tuple[str | None, str | None]:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        return chromium, shutil.which("chromedriver")

    chromium, driver = find()
    if not (chromium and driver):
        done = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False
        )
        chromium, driver = find()
        if done.returncode != 0 or not (chromium and driver):
            pytest.skip(
                "Debian's chromium and chromedriver are missing and could not be installed "
                f"by {INSTALL_SCRIPT.name}: {done.stderr.strip() or done.stdout.strip()}"
            )
    return chromium, driver


Flows = dict[str, tuple[str | None, frozenset[str]]]


def registry_names(project: Path) -> tuple[list[str], list[str], Flows]:
    """The registered pipelines' names, the top-level namespaces of ``__default__``'s nodes and
    its datasets' flows (dataset → the namespace that writes it, or None, and those that read
    it), from the project's own registry (what ``kedro registry list`` prints)."""
    bootstrap_project(project)
    from kedro.framework.project import pipelines

    registered = sorted(pipelines)
    default = pipelines["__default__"]
    namespaces = {n.namespace.split(".")[0] for n in default.nodes if n.namespace}
    writer: dict[str, str] = {}
    readers: dict[str, set[str]] = {}
    for node in default.nodes:
        top = (node.namespace or "").split(".")[0]
        for name in node.outputs:
            writer[name] = top
        for name in node.inputs:
            if not name.startswith("params:") and name != "parameters":
                readers.setdefault(name, set()).add(top)
    flows = {
        name: (writer.get(name), frozenset(readers.get(name, ())))
        for name in set(writer) | set(readers)
    }
    return registered, sorted(namespaces), flows


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve the folder ``site`` on 127.0.0.1, on a free port; yield its URL."""

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test's output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Debian chromium, driven by Debian's chromedriver (never Selenium Manager)."""
    chromium, driver_path = browser_tools()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        "--disable-gpu",
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(RENDER_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


VISIBLE_TEXTS_JS = """
return Array.from(document.querySelectorAll(arguments[0]))
    .filter(e => e.getClientRects().length > 0
                 && e.checkVisibility({opacityProperty: true, visibilityProperty: true}))
    .map(e => e.textContent.trim());
"""


def visible_texts(driver: WebDriver, css: str) -> set[str]:
    """The texts of the elements matching ``css`` that are rendered (laid out, not hidden or
    transparent), read in one call so that a re-render cannot interleave."""
    return set(driver.execute_script(VISIBLE_TEXTS_JS, css))


def shown(name: str, texts: set[str]) -> bool:
    return name in texts or pretty(name) in texts


def test_static_viz_site_renders_every_pipeline(tmp_path: Path, browser: WebDriver) -> None:
    project = make_project(tmp_path)
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    log = tmp_path / "build.log"
    with log.open("w") as out:
        # Build in a subprocess while this process reads the registry (two cores, both busy).
        build = subprocess.Popen(
            [sys.executable, str(BUILD_SCRIPT)],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            registered, namespaces, flows = registry_names(project)
            returncode = build.wait(timeout=300)
        finally:
            if build.poll() is None:
                build.kill()
                build.wait()
    assert returncode == 0, f"building the site failed:\n{log.read_text()[-4000:]}"

    built = project / SITE
    assert (built / "index.html").is_file(), f"no {SITE}/index.html:\n{log.read_text()[-2000:]}"
    assert (built / "api" / "main").is_file()
    assert not (project / "build").exists(), "the viz site must stay out of setuptools' build/"
    assert registered and "__default__" in registered
    assert namespaces, "the default pipeline has no namespaces: nothing to group in the flowchart"

    with serve(built) as url:
        browser.get(url)
        try:
            WebDriverWait(browser, RENDER_TIMEOUT).until(
                lambda d: (
                    visible_texts(d, GROUP_LABELS) and d.find_elements(By.CSS_SELECTOR, SELECTOR)
                )
            )
        except TimeoutException:
            body = browser.execute_script("return document.body ? document.body.innerText : ''")
            pytest.fail(
                f"the flowchart did not render in {RENDER_TIMEOUT} s; the page shows:\n{body}"
            )
        check_default_view(browser, namespaces, flows)
        check_page(browser, registered, namespaces)


SETTLED_VIEW_JS = """
const graph = document.querySelector(arguments[0]);
const wrapper = graph && graph.querySelector('#zoom-wrapper');
const zoom = document.querySelector(arguments[1]);
const shown = e => e.getClientRects().length > 0
    && e.checkVisibility({opacityProperty: true, visibilityProperty: true});
const labels = Array.from(document.querySelectorAll(arguments[2])).filter(shown);
return {
    transform: wrapper ? wrapper.getAttribute('transform') : null,
    animating: !!document.querySelector('.pipeline-flowchart__zoom-wrapper--animating'),
    zoom: zoom ? zoom.textContent.trim() : null,
    labels: labels.map(e => [e.textContent.trim(), e.getBoundingClientRect().height]).sort(),
};
"""


def settled_view(driver: WebDriver, timeout: float = 30) -> dict:
    """The flowchart's zoom and visible node labels (with their heights on screen) once the view
    no longer moves: the same in three reads half a second apart (kedro-viz fits the graph in
    the window when it is laid out, with a transition when that happens again)."""
    reads: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        read = driver.execute_script(SETTLED_VIEW_JS, FLOWCHART, ZOOM_LEVEL, NODE_LABELS)
        reads = [*reads[-2:], read]
        if len(reads) == 3 and not read["animating"] and all(r == read for r in reads):
            return read
        time.sleep(0.5)
    pytest.fail(f"the flowchart kept moving for {timeout} s: {reads}")


def check_default_view(browser: WebDriver, namespaces: list[str], flows: Flows) -> None:
    """What a first visit shows: the groups and the datasets passed between them, readable."""
    view = settled_view(browser)
    shown_data = visible_texts(browser, DATA_LABELS)
    names = {pretty(name): name for name in flows} | {name: name for name in flows}
    data = {names.get(text, text) for text in shown_data}
    passed = {name for name, (writer, readers) in flows.items() if writer and readers - {writer}}

    # Nothing but the groups and the data between them: no node drawn outside its group, no
    # parameter, and no dataset that is not written by one pipeline and read by another.
    assert not visible_texts(browser, f"{FLOWCHART} .pipeline-node--task text")
    assert not visible_texts(browser, f"{FLOWCHART} .pipeline-node--parameters text")
    loose = sorted(data - passed)
    assert not loose, f"the default view shows datasets not passed between pipelines: {loose}"

    # ...and enough of that data to follow it: every group that reads another's output is shown
    # one such input, every group whose output another reads is shown one such output.
    for namespace in namespaces:
        inputs = {d for d in passed if namespace in flows[d][1] and flows[d][0] != namespace}
        outputs = {d for d in passed if flows[d][0] == namespace}
        assert not inputs or inputs & data, f"{namespace}: none of its inputs {sorted(inputs)}"
        assert not outputs or outputs & data, f"{namespace}: none of its outputs {sorted(outputs)}"

    # Readable: the zoom kedro-viz chose to fit the graph, and every label's height on screen.
    assert view["zoom"] and view["zoom"].endswith("%"), view
    zoom = int(view["zoom"].rstrip("%"))
    smallest = min(view["labels"], key=lambda label: label[1])
    assert zoom >= MIN_ZOOM_PERCENT and smallest[1] >= MIN_LABEL_PX, (
        f"the default view opens at {zoom} % with labels down to {smallest[1]:.1f} px "
        f"({smallest[0]}); {len(view['labels'])} labels: {sorted(t for t, _ in view['labels'])}"
    )


def check_page(browser: WebDriver, registered: list[str], namespaces: list[str]) -> None:
    """The rendered page: no error, every namespace a flowchart group, every pipeline offered."""
    assert browser.title == "Kedro-Viz"
    body = browser.execute_script("return document.body.innerText")
    assert "Oops" not in body, body
    assert not visible_texts(browser, ".pipeline-warning"), body
    uncaught = [e for e in browser.get_log("browser") if e.get("source") == "javascript"]
    assert not uncaught, f"uncaught JavaScript errors: {uncaught}"

    # The default flowchart: one labelled group per namespace of the default pipeline.
    groups = visible_texts(browser, GROUP_LABELS)
    missing = [ns for ns in namespaces if not shown(ns, groups)]
    assert not missing, f"flowchart groups {sorted(groups)} lack {missing}"
    assert len(visible_texts(browser, NODE_LABELS)) > len(groups)  # datasets drawn too

    # The pipeline selector: it shows the selected pipeline and, opened, offers every one.
    selector = browser.find_element(By.CSS_SELECTOR, SELECTOR)
    assert shown("__default__", {selector.find_element(By.CSS_SELECTOR, ".dropdown__label").text})
    selector.find_element(By.CSS_SELECTOR, ".dropdown__label").click()
    option_css = f"{SELECTOR} .menu-option__content"
    WebDriverWait(browser, 10).until(lambda d: visible_texts(d, option_css))
    options = visible_texts(browser, option_css)
    missing = [name for name in registered if not shown(name, options)]
    assert not missing, f"pipeline selector offers {sorted(options)}, lacking {missing}"

    # The checks can fail: a name the project does not have is found nowhere.
    assert not shown("no_such_pipeline", options | groups)
    assert "no_such_pipeline" not in browser.execute_script("return document.body.innerText")
