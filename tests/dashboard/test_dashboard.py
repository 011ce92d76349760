"""The dashboard in a real browser (Debian's chromium, headless, through chromedriver and
python3-selenium): tasks run, their bars appear in the task stream, a click shows the
decision, and a screenshot is saved (TASKRT_SCREENSHOT, default dashboard.png here).

Skipped, saying why, where chromium, chromedriver or selenium is missing; under CI=true
that is a failure instead. The daemon is stopped by its fixture, by pid; traffic goes to
127.0.0.1 only.
"""
import os
import shutil
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "security"))
from conftest import cli, daemons, free_port, tmp_root  # noqa: E402,F401 (fixtures)

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    SELENIUM = True
except ImportError:
    SELENIUM = False

MISSING = [name for name, ok in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER),
                                 ("python3-selenium", SELENIUM)) if not ok]
if MISSING:
    why = f"{', '.join(MISSING)} not installed (scripts/setup.sh installs them)"
    if os.environ.get("CI"):
        raise RuntimeError(why)
    pytest.skip(why, allow_module_level=True)

SCREENSHOT = os.environ.get("TASKRT_SCREENSHOT", "dashboard.png")


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--no-first-run", "--disable-extensions",
                "--disable-background-networking"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def submit(d, *args):
    r = cli("--socket", d.socket, "submit", *args)
    assert r.code == 0, r
    return r.out.strip().splitlines()


def wait_for(driver, condition, what, timeout=30):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda drv: condition())
    except Exception:
        raise AssertionError(f"timed out waiting for {what}; page says: "
                             f"{driver.find_element(By.TAG_NAME, 'body').text[:2000]}")


def click(driver, task_id, decision, expect):
    """Clicks a task's bar until the decision panel shows `expect` (the stream scrolls
    between finding a bar and the pointer reaching it, then holds still)."""
    for _ in range(5):
        try:
            bar(driver, task_id).click()
        except Exception:
            time.sleep(0.3)
            continue
        try:
            return wait_for(driver, lambda: task_id in decision.text and expect in decision.text,
                            f"the decision of {task_id}", timeout=5)
        except AssertionError:
            pass
    raise AssertionError(f"clicking {task_id} did not show its decision: {decision.text}")


def bar(driver, task_id):
    found = driver.find_elements(By.CSS_SELECTOR, f'#stream rect.bar[data-id="{task_id}"]')
    return found[0] if found else None


def test_bars_appear_for_tasks_and_a_click_shows_the_decision(daemons, browser):
    d = daemons("--http", f"127.0.0.1:{free_port()}", "--id-prefix", "dash-node")
    r = cli("--socket", d.socket, "dashboard")
    assert r.code == 0, r
    url = r.out.strip()
    assert "#token=" in url, url

    browser.get(url)
    assert "#token" not in browser.current_url  # the page took the token out of the URL
    conn = browser.find_element(By.ID, "conn")
    wait_for(browser, lambda: conn.text == "live", "the event stream")
    # The page names its daemon: with several daemons, each has its own dashboard.
    daemon = browser.find_element(By.ID, "daemon")
    wait_for(browser, lambda: daemon.text.startswith("daemon dash-node (pid"), "the daemon's name")
    assert browser.title == "taskrt dash-node"

    cpu = [submit(d, "math.primes", "--json", f'{{"below": {1000000 + i}}}')[0] for i in range(4)]
    io = [submit(d, "sys.sleep", "--json", '{"ms": 400}')[0] for _ in range(6)]
    failed = submit(d, "sys.sleep", "--json", '{"ms": 5000}', "--timeout", "300ms")[0]
    assert cli("--socket", d.socket, "wait", *cpu, *io, failed).code in (0, 1)

    for task_id in cpu + io + [failed]:
        wait_for(browser, lambda: bar(browser, task_id) is not None, f"a bar for {task_id}")
    # Finished runs are drawn closed; the timed-out one is marked.
    wait_for(browser, lambda: "failed" in bar(browser, failed).get_attribute("class"),
             "the timed-out task's bar marked failed")
    assert "failed" not in bar(browser, io[0]).get_attribute("class")
    assert bar(browser, io[0]).get_attribute("data-handler") == "sys.sleep"
    # cpu runs are on process rows, sleeps on the io worker's async lanes.
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#stream text")]
    assert any(label.startswith("cpu #") and "process" in label for label in labels), labels
    assert any(label.startswith("io #0 async") for label in labels), labels

    # A narrower window: the bars of the last 10 s, wider.
    browser.find_element(By.CSS_SELECTOR, '#window button[data-seconds="10"]').click()
    assert browser.find_element(By.ID, "window-s").text == "10"
    decision = browser.find_element(By.ID, "decision")
    click(browser, cpu[0], decision, "reason")
    assert "process in the cpu pool" in decision.text, decision.text
    assert "handler_hint" in decision.text, decision.text

    click(browser, failed, decision, "timed_out")
    assert browser.find_elements(By.CSS_SELECTOR, "#decision dd.error"), decision.text

    # The tables and charts fill from /api/stats.
    wait_for(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#workers tr")) > 2,
             "the workers table")
    pools = browser.find_element(By.ID, "pools").text
    assert "cpu" in pools and "io" in pools, pools
    assert browser.find_elements(By.CSS_SELECTOR, "#throughput canvas")
    assert browser.find_elements(By.CSS_SELECTOR, "#depth canvas")
    time.sleep(1)  # one more draw, for the screenshot
    assert browser.save_screenshot(SCREENSHOT), SCREENSHOT


def test_without_a_token_the_page_asks_for_one(daemons, browser):
    d = daemons("--http", f"127.0.0.1:{free_port()}")
    r = cli("--socket", d.socket, "dashboard", "-o", "json")
    assert r.code == 0, r
    page = r.json()["url"].split("#")[0]
    browser.get(page)
    login = browser.find_element(By.ID, "login")
    wait_for(browser, lambda: login.is_displayed(), "the token form")
    assert not browser.find_element(By.ID, "main").is_displayed()


def test_dashboard_command_without_http(daemons):
    d = daemons()
    r = cli("--socket", d.socket, "dashboard")
    assert r.code == 2, r
    assert "--http" in r.err, r
