"""The static kedro-viz site (``make viz-site``) renders every pipeline in headless Chromium.

The site is built in a throw-away copy of the project with ``scripts/build_viz_site.py`` (what
``make viz-site`` runs: ``kedro viz build``'s loader and deployer, writing to ``viz-site/``
instead of ``build/``), served by ``http.server`` on 127.0.0.1 and opened in Debian's
``chromium`` through its ``chromedriver`` (Selenium; no browser is ever downloaded).
``scripts/install-test-tools.sh`` installs both; ``make test`` runs it first.

The expected names come from the project's own pipeline registry: every registered pipeline
must be offered by the pipeline selector, and every namespace of the default pipeline (each
pipeline's nodes live in a namespace of its name) must label a group in the default flowchart.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
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


def registry_names(project: Path) -> tuple[list[str], list[str]]:
    """The registered pipelines' names and the top-level namespaces of ``__default__``'s nodes,
    from the project's own registry (what ``kedro registry list`` prints)."""
    bootstrap_project(project)
    from kedro.framework.project import pipelines

    registered = sorted(pipelines)
    namespaces = {n.namespace.split(".")[0] for n in pipelines["__default__"].nodes if n.namespace}
    return registered, sorted(namespaces)


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
            registered, namespaces = registry_names(project)
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
        check_page(browser, registered, namespaces)


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
