"""The API reference in a real browser: Debian's headless Chromium, driven through
its chromedriver, loads ``/v1/docs`` from the local server with every other host
out of reach, lists the operations, and a "try it out" call with the key scores.

Skipped when ``chromium`` or ``chromedriver`` is not installed (``make prereqs``
installs both as root). Selenium is given the driver explicitly: nothing is
downloaded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from credit_risk import names
from tests.integration.api.conftest import Serve

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
API_KEY = "browser-test-key"
CUSTOMER_ID = "5008804"
WAIT_SECONDS = 30

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (`make prereqs` installs them as root)",
)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the test run may be root, as CI is
        "--disable-dev-shm-usage",
        "--window-size=1280,2400",
        # As behind a proxy that lets nothing out: any host but this machine fails.
        "--proxy-server=http://127.0.0.1:9",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def click(driver: WebDriver, css: str, within: object | None = None) -> None:
    scope = within or driver
    element = WebDriverWait(driver, WAIT_SECONDS).until(
        lambda _: scope.find_element(By.CSS_SELECTOR, css)  # type: ignore[union-attr]
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def test_the_reference_lists_the_operations_and_try_it_out_scores_with_the_key(
    serve: Serve, browser: WebDriver
):
    # Given the local server with an API key, as the stage has
    base_url = serve(api_key=API_KEY)
    wait = WebDriverWait(browser, WAIT_SECONDS)

    # When the reference page is opened (without a key: a page load sends none)
    browser.get(f"{base_url}{names.ROUTE_DOCS}")

    # Then every operation of the API is listed
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= 6)
    listed = {
        element.get_attribute("data-path")
        for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert listed == {
        names.ROUTE_SCORE,
        names.ROUTE_SCORE_BATCH,
        names.ROUTE_HEALTH,
        f"{names.ROUTE_DECISION}/{{{names.ROUTE_DECISION_PARAMETER}}}",
        names.ROUTE_DOCS,
        names.ROUTE_OPENAPI,
    }

    # When the key is given in the Authorize dialog
    click(browser, ".auth-wrapper .authorize")
    key_input = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".auth-container input"))
    )
    key_input.send_keys(API_KEY)
    click(browser, ".auth-btn-wrapper .authorize")
    click(browser, ".auth-btn-wrapper .btn-done")

    # And POST /v1/scores is tried out with a customer of the store
    operation = browser.find_element(By.CSS_SELECTOR, "#operations-default-score_v1_scores_post")
    click(browser, ".opblock-summary-control", within=operation)
    click(browser, ".try-out__btn", within=operation)
    body = wait.until(
        lambda _: operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
    )
    body.send_keys(Keys.CONTROL, "a")
    body.send_keys(Keys.DELETE)
    body.send_keys(json.dumps({"customer_id": CUSTOMER_ID}))
    click(browser, ".btn.execute", within=operation)

    # Then the call went through with the key and returned the customer's score
    status = wait.until(
        lambda _: operation.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"
        )
    )
    assert status.text.strip() == "200"
    shown = operation.find_element(
        By.CSS_SELECTOR, ".live-responses-table .response-col_description pre"
    ).text
    score = json.loads(shown)
    assert score["customer_id"] == CUSTOMER_ID
    assert 0.0 <= score["default_probability"] <= 1.0
    assert score["decision"] in ("approve", "decline")

    # And the page needed nothing but this server, and the browser saw no error
    # (a blocked request or a violation of the page's policy would be one)
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert loaded
    assert all(url.startswith(f"{base_url}/") for url in loaded), loaded
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
