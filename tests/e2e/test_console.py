"""The web console in a real headless browser (Debian's chromium driven by chromedriver through
selenium): a wrong key is refused, a right one shows the endpoints, an endpoint's page shows a
job go from IN_QUEUE to COMPLETED without a reload, and the job's page shows its output.

Screenshots of each step go to test-artefacts/console/ (SKIFF_TEST_ARTEFACTS overrides the root).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.stack import REPO, SkiffProcess, endpoint_hcl

# A worker that takes a few seconds to start, so the job is seen IN_QUEUE before it runs.
ECHO = "tests/workers/slow_start_echo.py"
ARTEFACTS = Path(os.environ.get("SKIFF_TEST_ARTEFACTS", REPO / "test-artefacts")) / "console"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    # No silent skip: the suite needs them (scripts/setup.sh test installs both).
    assert chromium, "chromium is not on PATH: run scripts/setup.sh test (apt-get install chromium)"
    assert driver_path, "chromedriver is not on PATH: run scripts/setup.sh test (apt-get install chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTEFACTS / f"{name}.png"))


@pytest.mark.timeout(720)  # a cold `skiff up` and its worker on a busy machine
def test_console_login_endpoints_a_job_going_live_to_completed_and_its_page(
    skiff_stack: Callable[..., SkiffProcess], browser: WebDriver
) -> None:
    stack = skiff_stack(
        {"echo": endpoint_hcl("echo", ECHO, env={"SLOW_START_S": "4"}, scaling={"max_workers": 1})}, timeout=120
    )
    wait = WebDriverWait(browser, 120, poll_frequency=0.1)
    browser.get(f"{stack.url}/console")

    # A wrong key is refused, and forgotten.
    wait.until(ec.visibility_of_element_located((By.ID, "key"))).send_keys("sk_wrong_key")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "login-error"), "invalid API key"))
    assert browser.execute_script("return sessionStorage.getItem('skiff.key')") is None
    assert "sk_wrong_key" not in browser.current_url
    shot(browser, "01-wrong-key-refused")

    # The right key: the endpoints.
    browser.find_element(By.ID, "key").send_keys(stack.key)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-endpoint="echo"]')))
    assert stack.key not in browser.current_url
    shot(browser, "02-endpoints")

    # One endpoint; a job submitted meanwhile shows up IN_QUEUE (no worker yet: scaled to zero)
    # and turns COMPLETED on the same page, with no reload (a marker on window survives).
    browser.find_element(By.LINK_TEXT, "echo").click()
    wait.until(ec.presence_of_element_located((By.ID, "workers")))
    browser.execute_script("window.__sameDocument = true")
    with stack.client() as client:
        job = client.post("/v2/echo/run", json={"input": {"sleep": 1, "hello": "console"}}).json()["id"]
    row = f'tr[data-job="{job}"] td.status'
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, row), "IN_QUEUE"))
    shot(browser, "03-endpoint-job-in-queue")
    # A cold worker on a busy machine: allow minutes, not seconds.
    WebDriverWait(browser, 300, poll_frequency=0.2).until(
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, row), "COMPLETED")
    )
    assert browser.execute_script("return window.__sameDocument") is True
    shot(browser, "04-endpoint-job-completed")

    # The job's own page: its output and timings.
    browser.find_element(By.LINK_TEXT, job).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "job-status"), "COMPLETED"))
    assert '"hello": "console"' in browser.find_element(By.ID, "output").text
    assert browser.execute_script("return window.__sameDocument") is True
    shot(browser, "05-job")
