"""The dashboard of `specflow serve` in headless Chromium: runs submitted through the page and
over the API appear and finish on the page without a reload; a run's operations show when it
is selected; its cancel button interrupts a long run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_serve import Server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 120  # the most a condition may take before the test fails (it never sleeps)


def _browser_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing and not os.environ.get("CI"):
        pytest.skip(f"no headless browser here: {', '.join(missing)} (CI installs them)")
    assert not missing, f"CI must have {', '.join(missing)} (.ci/run installs them)"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the tests of this module (each opens the page anew)."""
    tmp_path = tmp_path_factory.mktemp("browser")
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    # the driver and the browser are Debian's, given by path: selenium-manager is never
    # asked to find or download either
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests of this module: each submits its own runs."""
    s = Server(tmp_path_factory.mktemp("served"))
    yield s
    s.stop()


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Wait until ``condition(driver)`` is truthy (the page re-renders while we look: an
    element found may be replaced before it is read, so such a look is retried)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def look(d: Any) -> Any:
        try:
            return condition(d)
        except (StaleElementReferenceException, NoSuchElementException):
            return False

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(look, message=what)


def row_status(driver: Any, run_id: str) -> str | None:
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, f'tr.run[data-id="{run_id}"] td[data-status]')
    return cells[0].get_attribute("data-status") if cells else None


def select_run(driver: Any, run_id: str) -> None:
    """Click the run's row until the detail pane shows that run."""
    from selenium.webdriver.common.by import By

    def clicked(d: Any) -> bool:
        shown = d.find_elements(By.CSS_SELECTOR, f'#detail-run[data-id="{run_id}"]')
        if shown:
            return True
        d.find_element(By.CSS_SELECTOR, f'tr.run[data-id="{run_id}"]').click()
        return False

    wait_for(driver, clicked, f"the detail of {run_id}")


def operation_done(driver: Any, operation: str) -> int | None:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR,
                                f'#operations tr.op[data-operation="{operation}"]')
    return int(rows[0].get_attribute("data-done")) if rows else None


TWO_ECHOES = ('"@type": sequential_flow\nstages:\n  - {"@type": echo, message: one}\n'
              '  - {"@type": echo, message: two}\n')


def test_runs_appear_and_finish_on_the_page_without_a_reload(server: Server,
                                                              browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"http://127.0.0.1:{server.port}/")
    assert browser.title == "specflow"
    browser.execute_script("window.__sameDocument = 'yes';")  # gone if the page reloads

    # submitted through the page's form
    browser.find_element(By.ID, "spec-text").send_keys(TWO_ECHOES)
    Select(browser.find_element(By.ID, "spec-backend")).select_by_visible_text("inline")
    browser.find_element(By.ID, "submit").click()
    from_page = wait_for(browser, lambda d: d.find_element(By.ID, "submitted")
                         .get_attribute("data-id"), "the run id the page got back")
    wait_for(browser, lambda d: row_status(d, from_page) == "done", f"{from_page} done")
    bar = browser.find_element(By.CSS_SELECTOR, f'tr.run[data-id="{from_page}"] .bar')
    assert bar.get_attribute("data-pct") == "100"
    code, run = server.call("GET", f"/api/runs/{from_page}")
    assert code == 200 and run["status"] == "done" and run["counts"]["echo"]["done"] == 2

    # submitted over the HTTP API while the page is open
    code, body = server.call("POST", "/api/runs", {
        "spec": '"@type": specflow.repeat\ntask: {"@type": echo, message: api}\ncount: 3\n',
        "backend": "inline"})
    assert code == 201, body
    from_api = body["run_id"]
    wait_for(browser, lambda d: row_status(d, from_api) is not None, f"{from_api} listed")
    wait_for(browser, lambda d: row_status(d, from_api) == "done", f"{from_api} done")

    # drilling into a run shows its operations and their counts
    select_run(browser, from_api)
    wait_for(browser, lambda d: operation_done(d, "echo") == 3, "echo × 3 done in the detail")
    status = browser.find_element(By.ID, "detail-status").get_attribute("data-status")
    assert status == "done"
    select_run(browser, from_page)
    wait_for(browser, lambda d: operation_done(d, "echo") == 2, "echo × 2 done in the detail")

    assert browser.execute_script("return window.__sameDocument;") == "yes", "the page reloaded"
    assert browser.find_element(By.ID, "error").text == ""
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # the page's script ran without an error
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    origin = f"http://127.0.0.1:{server.port}/"
    assert fetched and all(u.startswith(origin) for u in fetched), fetched  # no CDN


def test_the_cancel_button_interrupts_a_long_run(server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    code, body = server.call("POST", "/api/runs", {
        "spec": '"@type": sequential_flow\nstages:\n  - {"@type": sleep, seconds: 0}\n'
                '  - {"@type": sleep, seconds: 600}\n', "backend": "inline"})
    assert code == 201, body
    rid = body["run_id"]
    browser.get(f"http://127.0.0.1:{server.port}/")
    browser.execute_script("window.__sameDocument = 'yes';")
    select_run(browser, rid)
    # the first sleep is done, so the long one runs: the page shows it as it happens
    wait_for(browser, lambda d: operation_done(d, "sleep") == 1, "the first sleep done")
    assert row_status(browser, rid) == "running"

    def sleeping_count(d: Any) -> str | None:
        cells = d.find_elements(By.CSS_SELECTOR,
                                '#operations tr.op[data-operation="sleep"] td[data-k="running"]')
        return cells[0].text if cells else None

    # the long sleep shows in a running column of its own, and the bar is half full
    wait_for(browser, lambda d: sleeping_count(d) == "1", "the long sleep shown running")

    def bar_pct(d: Any) -> str | None:
        bars = d.find_elements(By.CSS_SELECTOR, f'tr.run[data-id="{rid}"] .bar')
        return bars[0].get_attribute("data-pct") if bars else None

    # the list refreshes apart from the detail: its bar shows one of two tasks finished
    wait_for(browser, lambda d: bar_pct(d) == "50", "the bar half full")

    def cancelled(d: Any) -> bool:
        if d.find_element(By.ID, "detail-status").get_attribute("data-status") == "interrupted":
            return True
        if not d.execute_script("return window.__cancelClicked === true;"):
            d.find_element(By.ID, "cancel").click()
            d.execute_script("window.__cancelClicked = true;")
        return False

    wait_for(browser, cancelled, "the run interrupted in the detail")
    wait_for(browser, lambda d: row_status(d, rid) == "interrupted", "the row interrupted")
    code, run = server.call("GET", f"/api/runs/{rid}")
    assert code == 200 and run["status"] == "interrupted"
    assert run["counts"]["sleep"]["done"] == 1
    assert browser.execute_script("return window.__sameDocument;") == "yes", "the page reloaded"


def test_a_failed_run_shows_its_failure_with_its_input(server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{server.port}/")
    code, body = server.call("POST", "/api/runs", {
        "spec": '"@type": python_eval\nexpression: "1 // 0"\n', "backend": "inline"})
    assert code == 201, body
    rid = body["run_id"]
    wait_for(browser, lambda d: row_status(d, rid) == "failed", f"{rid} failed")
    select_run(browser, rid)

    def failure(d: Any) -> Any:
        items = d.find_elements(By.CSS_SELECTOR, '#failures li.failure[data-operation="python_eval"]')
        return items[0].text if items else None

    text = wait_for(browser, failure, "the failure in the detail")
    assert "ZeroDivisionError" in text and "1 // 0" in text
    assert operation_done(browser, "python_eval") == 0
