"""The run report (issue 41, docs/quality.md) opened in a real browser: Debian's headless
Chromium, driven by Selenium through Debian's chromedriver (make test installs both; given
their paths, Selenium downloads nothing). The page's numbers are checked against the ingest
log, its trend against the files' dates, its flag against a day made ten times the usual."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

import minilake
from minilake.generate import generate
from minilake.outbound import runreport

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DAYS = 9
# the machine's closed network: without these, Chromium tries Google's hosts at every start
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.fail(f"no {CHROMIUM} or {DRIVER}: make test installs them (apt-get install "
                    f"chromium chromium-driver)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> dict:
    """Nine days of a small world whose last day's sales are ten times the usual (each sale
    again under nine more ids), run once: the root, the run and its report's data."""
    root = tmp_path_factory.mktemp("run_report") / "root"
    generate(root, start="2024-10-01", days=DAYS, customers=200, seed=12, landing_only=True)
    last = sorted((root / "landing_zone").glob("sales_*.txt"))[-1]
    lines = [line for line in last.read_bytes().decode().split("\r\n") if line]
    many = [f"{k}{line}" if k else line for k in range(10) for line in lines]
    last.write_bytes(("\r\n".join(many) + "\r\n").encode())
    result = minilake.run(root)
    assert result.ok and result.report is not None
    data = json.loads(result.report.with_suffix(".json").read_text())
    return {"root": root, "result": result, "data": data, "big_day": last.stem[6:]}


def cells(row) -> dict[str, str]:
    return {c.get_attribute("class").split()[-1]: c.text
            for c in row.find_elements(By.CSS_SELECTOR, "td.n")}


def test_the_page_shows_the_ingest_logs_numbers_the_trend_and_the_flag(browser, reported,
                                                                         tmp_path):
    root, page = reported["root"], reported["result"].report
    browser.get(page.as_uri())
    log = minilake.sql("SELECT * FROM ingest_log", root=root)       # this run's, and only
    for source in ("customer", "product", "sales"):
        mine = log[log["source"] == source]
        row = browser.find_element(By.CSS_SELECTOR, f'#sources tr[data-source="{source}"]')
        assert cells(row) == {
            "files": str(len(mine)), "rows-in": str(mine["rows_read"].sum()),
            "loaded": str(mine["rows_loaded"].sum()),
            "rejected": str(mine["rows_rejected"].sum()),
            "quarantined": str((mine["status"] == "quarantined").sum())}, source
        points = browser.find_elements(By.CSS_SELECTOR,
                                       f'svg[data-source="{source}"] circle.point')
        applied = mine[mine["status"] == "applied"]
        want = {str(d)[:10]: str(n) for d, n in applied.groupby("file_date")["rows_read"]
                .sum().items()}
        assert {p.get_attribute("data-day"): p.get_attribute("data-rows")
                for p in points} == want, source
        assert len(points) == len(want) == DAYS      # one point per day
    flags = browser.find_elements(By.CSS_SELECTOR, ".anomaly")
    big = f"{reported['big_day'][:4]}-{reported['big_day'][4:6]}-{reported['big_day'][6:]}"
    assert [(f.get_attribute("data-source"), f.get_attribute("data-day")) for f in flags] == [
        ("sales", big)]
    flagged = browser.find_elements(By.CSS_SELECTOR, 'svg[data-source="sales"] '
                                                     "circle.point.flagged")
    assert [p.get_attribute("data-day") for p in flagged] == [big]
    shot = tmp_path / "run_report.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_fits_a_phone_and_links_the_index(browser, reported):
    """At a phone's width (390 px) nothing is wider than the screen; the index links the
    run's page, and the page the index."""
    browser.set_window_size(390, 844)
    try:
        browser.get(reported["result"].report.as_uri())
        width = browser.execute_script("return document.documentElement.clientWidth")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        browser.find_element(By.LINK_TEXT, "Every run").click()
        links = browser.find_elements(By.CSS_SELECTOR, "#runs a")
        assert [a.text for a in links] == [reported["data"]["run_id"]]
    finally:
        browser.set_window_size(1000, 1600)


def test_what_a_report_works_on_is_bounded_by_its_window_not_the_lakes_age(tmp_path):
    """A day's report after 40 days works on the ingest log's rows of the last ``WINDOW``
    days and the day's own, as one after 8 days on its 8 days': not the lake's whole log
    (counted here; benchmarks/run_report.py times it)."""
    got = {}
    for days in (8, 40):
        root = tmp_path / f"d{days}"
        generate(root, start="2024-08-01", days=days, customers=20, seed=4, landing_only=True)
        held = root / "held"
        held.mkdir()
        for path in (root / "landing_zone").glob(f"*{sorted_days(root)[-1]}*"):
            shutil.move(path, held / path.name)
        assert minilake.run(root).ok
        for path in held.iterdir():
            shutil.move(path, root / "landing_zone" / path.name)
        result = minilake.run(root)
        got[days] = json.loads(result.report.with_suffix(".json").read_text())
    assert got[8]["log_rows_read"] == 3 * 8
    assert got[40]["log_rows_read"] == 3 * (runreport.WINDOW + 1)
    assert len(got[40]["trend"]["days"]) == len(got[8]["trend"]["days"]) == runreport.WINDOW


def sorted_days(root: Path) -> list[str]:
    return sorted({p.stem.split("_")[-1] for p in (root / "landing_zone").iterdir()})
