"""The MLflow UI of a finished sweep in headless Chromium (Debian's chromium + chromedriver,
driven by Selenium): the parent run with its child runs, then the compare view of two
trials with their metrics. Screenshots are kept under test-artifacts/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from orchestrator.laptop.compare import compare_runs_url, experiment_url
from tests.conftest import REPO
from tests.tracking.conftest import FinishedSweep, TrackingServer

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = REPO / "test-artifacts"
WAIT_S = 60.0


@pytest.fixture
def browser(tmp_path: Path):
    if not (CHROMIUM and CHROMEDRIVER):
        # `make test` installs them (browser-deps): a missing browser is a failure, never a skip.
        pytest.fail("chromium/chromedriver missing: run `make browser-deps`", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-extensions",
        "--window-size=1600,1300",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def _wait_for_text(driver, texts: list[str], name: str) -> str:  # noqa: ANN001
    """Bounded wait until every text is on the page (the UI is a React app that renders late)."""
    deadline = time.monotonic() + WAIT_S
    page = ""
    while time.monotonic() < deadline:
        page = driver.find_element("tag name", "body").text
        if all(text in page for text in texts):
            return page
        time.sleep(0.5)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}-timeout.png"))
    (ARTIFACTS / f"{name}-timeout.txt").write_text(page)
    missing = [text for text in texts if text not in page]
    raise AssertionError(f"{name}: not on the page after {WAIT_S:.0f} s: {missing}")


def _shown(element) -> bool:  # noqa: ANN001
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return element.is_displayed()
    except StaleElementReferenceException:  # removed from the page
        return False


def _close_assistant(driver) -> None:  # noqa: ANN001
    """The MLflow 3 UI opens an assistant side panel; close it so the runs get the width (for the screenshots: no
    verdict depends on it), waiting until its close button is gone rather than a fixed time."""
    for button in driver.find_elements("css selector", "button[aria-label='Close']"):
        if _shown(button):
            button.click()
            deadline = time.monotonic() + 10  # bound on the wait, not a verdict: a panel still open only narrows a picture
            while _shown(button) and time.monotonic() < deadline:
                time.sleep(0.1)
            return


def test_ui_shows_parent_with_children_and_compares_two_trials(
    browser, finished_sweep: FinishedSweep, tracking_server: TrackingServer
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_server.uri)
    runs = client.search_runs([finished_sweep.experiment_id], filter_string=f"tags.`orch.sweep_id` = '{finished_sweep.sweep_id}'")
    children = sorted((r for r in runs if r.data.tags.get("orch.kind") == "trial"), key=lambda r: r.info.run_name)
    assert len(children) == 2
    ARTIFACTS.mkdir(exist_ok=True)

    browser.get(experiment_url(tracking_server.uri, finished_sweep.experiment_id))
    _wait_for_text(browser, [finished_sweep.sweep_id], "experiment")
    _close_assistant(browser)
    # children are nested under the parent: expand it when the UI shows them collapsed
    page = browser.find_element("tag name", "body").text
    if not all(child.info.run_name in page for child in children):
        for button in browser.find_elements("css selector", "button[data-component-id*='runnamecellrenderer']"):
            if button.is_displayed():
                button.click()
                break
    _wait_for_text(browser, [finished_sweep.sweep_id, *(child.info.run_name for child in children)], "experiment-children")
    browser.save_screenshot(str(ARTIFACTS / "mlflow-sweep-runs.png"))

    browser.get(compare_runs_url(tracking_server.uri, finished_sweep.experiment_id, [c.info.run_id for c in children]))
    expected = ["val_loss", "train_loss", *(child.info.run_name for child in children)]
    page = _wait_for_text(browser, expected, "compare")
    _close_assistant(browser)
    headings = browser.find_elements("xpath", "//*[normalize-space(text())='Metrics']")
    if headings:  # the metrics table in view for the screenshot
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", headings[-1])
        time.sleep(1.0)  # lets the scroll settle for the screenshot only: no verdict reads the page after it
    for child in children:  # each trial's metric value is on the page (the UI rounds to a few digits)
        value = child.data.metrics["val_loss"]
        assert any(f"{value:.{digits}g}" in page for digits in (3, 4, 5, 6)) or f"{value:.3f}" in page, (value, page[:2000])
    shot = ARTIFACTS / "mlflow-compare.png"
    browser.save_screenshot(str(shot))
    docs_img = REPO / "docs" / "img"
    docs_img.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, docs_img / "mlflow-compare.png")
