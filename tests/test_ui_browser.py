"""`raylake ui` in Debian's headless chromium (selenium + chromedriver) over the lake the
chain built (tests/conftest.py `chain_lake`): the tables list, flights, its version 0,
the diff between two versions (on a branch where flights has a second version), a run
link to the run's inputs, a model version's lineage graph clicked through to its
training set. No page logs a console error. With RAYLAKE_SCREENSHOTS=docs the lineage
page's screenshot is written to docs/ui_lineage.png (the README shows it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from browser import CHROMEDRIVER, CHROMIUM
from conftest import REPO
from test_ui import serve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
                       reason="needs Debian's chromium and chromium-driver"),
]


@pytest.fixture(scope="module")
def chain_ui(chain_lake):
    """The UI over the chain's lake, with a branch ``ui`` where flights has version 1 (five
    of its rows appended by a recorded run that read flights@0). Main is not written."""
    from raylake.lake import Lake, Storage
    from raylake.lake.branches import create_branch, delete_branch
    from raylake.lake.commit import write_table
    from raylake.lake.runs import RunRecorder

    lake = Lake(Storage.from_config(chain_lake.root))
    create_branch(lake, "ui", tables=["flights"])
    branch = lake.on_branch("ui")
    with RunRecorder(branch, "ui-append", {"rows": 5}) as run:
        run.add_input(table="flights", version=0)
        five = branch.dataset("flights", 0).head(5)
        v = write_table(branch, "flights", five, run_id=run.run_id, job="ui-append")
        run.add_output(table="flights", version=v, rows=5)
    try:
        yield from ((ui, run.run_id) for ui in serve(lake))
    finally:
        delete_branch(lake, "ui")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    # Its own options, not tests/browser.py's: with those this walk failed once in a full
    # run (not yet explained); these passed in every full run before.
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1760,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_person_walks_the_chains_lake_in_a_browser(chain_ui, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ui, append_run = chain_ui
    d = browser
    wait = WebDriverWait(d, 30)
    visited: list[str] = []

    def loaded(page: str) -> None:
        wait.until(lambda drv: drv.find_element(By.TAG_NAME, "body").get_attribute("data-page")
                   == page)
        visited.append(d.current_url)
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, (d.current_url, errors)

    def title(attr: str) -> str | None:
        return d.find_element(By.ID, "table-title").get_attribute(attr)

    # The tables list, then flights, then its version 0.
    d.get(f"{ui.base}/tables")
    loaded("tables")
    names = [a.text for a in d.find_elements(By.CSS_SELECTOR, "a.table-link")]
    assert {"flights", "weather", "training/flights_delay", "features/route_delay_28d"} <= \
        set(names), names
    d.find_element(By.LINK_TEXT, "flights").click()
    loaded("table")
    assert title("data-table") == "flights"
    run_of_v0 = d.find_element(By.CSS_SELECTOR, "tr[data-version='0'] a.run-link").text
    assert run_of_v0.startswith("ingest ingest-"), run_of_v0
    d.find_element(By.CSS_SELECTOR, "tr[data-version='0'] a.version-link").click()
    loaded("table")
    assert (title("data-table"), title("data-version")) == ("flights", "0")
    assert d.find_element(By.ID, "row-count").text == "27,004"
    assert len(d.find_elements(By.CSS_SELECTOR, "#sample tr")) == 21  # header + 20 rows

    # flights on branch ui has two versions: the diff between them.
    d.find_element(By.CSS_SELECTOR, "a.branch-link[data-branch='ui']").click()
    loaded("table")
    assert d.find_element(By.ID, "branch").text == "ui" and title("data-version") == "1"
    d.find_element(By.ID, "diff-go").click()
    loaded("diff")
    assert d.find_element(By.ID, "rows-added").text == "5"
    assert d.find_element(By.ID, "rows-removed").text == "0"
    assert len(d.find_elements(By.CSS_SELECTOR, "#added tr")) == 6

    # The run that wrote version 1, and from it its input: flights@0.
    d.find_element(By.LINK_TEXT, "1").click()
    loaded("table")
    d.find_element(By.CSS_SELECTOR, "tr[data-version='1'] a.run-link").click()
    loaded("run")
    assert append_run in d.find_element(By.ID, "run-title").text
    d.find_element(By.CSS_SELECTOR, "#inputs a.input-link").click()
    loaded("table")
    assert (title("data-table"), title("data-version")) == ("flights", "0")
    assert d.find_element(By.ID, "branch").text == "ui"

    # A model version's lineage graph, clicked through to its training set.
    d.get(f"{ui.base}/models")
    loaded("models")
    d.find_element(By.LINK_TEXT, "delay_model:1").click()
    loaded("model")
    training = d.find_element(By.ID, "training-set").text
    assert training.startswith("training/flights_delay@"), training
    d.find_element(By.ID, "model-lineage").click()
    loaded("lineage")
    wait.until(lambda drv: drv.find_element(By.TAG_NAME, "body").get_attribute(
        "data-graph-ready"))
    keys = [n.get_attribute("data-key") for n in d.find_elements(By.CSS_SELECTOR, ".node")]
    assert "model:delay_model@1" in keys and f"table:{training}" in keys, keys
    assert any(k.startswith("run:train-") for k in keys) and "table:flights@0" in keys, keys
    shot = tmp_path / "ui_lineage.png"
    d.save_screenshot(str(shot))
    if os.environ.get("RAYLAKE_SCREENSHOTS") == "docs":
        shutil.copyfile(shot, REPO / "docs" / "ui_lineage.png")
    node = d.find_element(By.CSS_SELECTOR, f"a.node[data-key='table:{training}'] rect")
    node.click()
    loaded("table")
    name, version = training.split("@")
    assert (title("data-table"), title("data-version")) == (name, version)
    assert len(visited) == 12
