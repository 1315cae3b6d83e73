"""The live dashboard, as a person sees it: a real headless Chromium (Debian's `chromium`
driven by `chromedriver`, which `scripts/setup` installs) loads `/status` while a
computation runs and reads what the page shows. The stock scheduler's dashboard is Bokeh,
drawn on canvases, so these tests are rask's alone.

`RASK_DASHBOARD_SCREENSHOT=path` keeps a screenshot of the page mid-computation (the
README's picture is made this way)."""

import os
import shutil
import time

import pytest

from conftest import wait_until

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium")


@pytest.fixture
def browser():
    if not (CHROMEDRIVER and CHROMIUM):
        pytest.skip("chromium and chromedriver are missing: scripts/setup installs them as root")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def slow(x):
    time.sleep(0.05)
    return x


def text_of(driver, selector):
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def test_status_page_shows_the_computation(cluster_factory, scheduler_kind, browser):
    if scheduler_kind != "rask":
        pytest.skip("the stock dashboard is Bokeh canvases: no text to read")
    cluster = cluster_factory(scheduler_args=["--dashboard", "--dashboard-address", "127.0.0.1:0"])
    cluster.add_workers(2)
    with cluster.client() as c:
        base = f"http://127.0.0.1:{c.scheduler_info()['services']['dashboard']}"
        workers = list(c.scheduler_info()["workers"])
        browser.get(f"{base}/status")
        body = lambda: text_of(browser, "body")  # noqa: E731

        # every worker, before anything runs
        wait_until(lambda: all(w in body() for w in workers), "the workers on the page")

        futures = c.map(slow, range(400), key=[f"slow-{i}" for i in range(400)])
        # the task prefix appears with its progress, and the progress moves
        wait_until(lambda: "slow" in text_of(browser, '#progress [data-prefix="slow"]'), "slow's row")
        first = text_of(browser, '#progress [data-prefix="slow"]')
        wait_until(
            lambda: text_of(browser, '#progress [data-prefix="slow"]') != first,
            "slow's progress to move",
        )
        # the task stream names what ran, and the counters count it
        wait_until(lambda: "slow" in text_of(browser, "#task-stream"), "slow in the task stream")
        assert "400" in text_of(browser, "#progress")
        if path := os.environ.get("RASK_DASHBOARD_SCREENSHOT"):
            browser.save_screenshot(path)
        assert c.gather(futures) == list(range(400))
        wait_until(
            lambda: "400 / 400" in text_of(browser, '#progress [data-prefix="slow"]'),
            "all of slow done on the page",
        )


def test_workers_page_and_single_panels(cluster_factory, scheduler_kind, browser):
    if scheduler_kind != "rask":
        pytest.skip("the stock dashboard is Bokeh canvases: no text to read")
    args = ["--dashboard", "--dashboard-address", "127.0.0.1:0", "--dashboard-prefix", "proxy/1"]
    cluster = cluster_factory(scheduler_args=args)
    cluster.add_workers(1)
    with cluster.client() as c:
        base = f"http://127.0.0.1:{c.scheduler_info()['services']['dashboard']}/proxy/1"
        (address,) = c.scheduler_info()["workers"]
        futures = c.map(slow, range(20), key=[f"slow-{i}" for i in range(20)])
        c.gather(futures)
        browser.get(f"{base}/workers")
        wait_until(lambda: address in text_of(browser, "#workers-table"), "the worker in the table")
        # the table shows its threads and stored results
        row = text_of(browser, f'#workers-table [data-worker="{address}"]')
        assert address in row
        browser.get(f"{base}/individual-progress")
        wait_until(lambda: "20 / 20" in text_of(browser, '[data-prefix="slow"]'), "the progress panel")
        # a single panel has no navigation bar (JupyterLab embeds it)
        assert "Workers" not in text_of(browser, "nav")
