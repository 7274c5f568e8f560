"""The labeling page in Debian's headless chromium (selenium + chromedriver): open it,
press a key, find the label in the lake's queue table; the page's JSON API refuses a
label for an item not in the queue with a message naming it. No Ray."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMEDRIVER, CHROMIUM, chrome
from conftest import free_port
from youtube_lake import overrides, write_youtube

from raylake.config.loader import compose_config, to_config
from raylake.labeling.page import keys_for, make_app
from raylake.labeling.queue import enqueue, read_queue


def test_keys_are_numbers_and_unambiguous_first_letters():
    assert keys_for(["ham", "spam"]) == {"1": 0, "2": 1, "h": 0, "s": 1}
    assert keys_for(["spam", "scam", "ok"]) == {"1": 0, "2": 1, "3": 2, "o": 2}


@pytest.fixture
def page(lake):
    """The page over a YouTube lake, served by uvicorn in a thread: (base url, lake, conf)."""
    import uvicorn

    write_youtube(lake)
    conf = to_config(compose_config(overrides(lake.root, "active_labeling.batch_size=2")))
    app = make_app(lake, conf.active_labeling)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", lake, conf.active_labeling
    server.should_exit = True
    thread.join(10)


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def test_api_refuses_a_label_for_an_item_not_in_the_queue(page):
    base, lake, conf = page
    first = _get(f"{base}/api/next")  # queues the seed batch
    assert first["item"] is not None and first["batch"] == 0
    status, body = _post(f"{base}/api/label", {"item_id": "not-an-item", "label": 1, "who": "t"})
    assert status == 404
    assert "'not-an-item' is not in queue 'labeling/youtube_spam'" in body["detail"]
    status, body = _post(f"{base}/api/label", {"item_id": first["item"]["item_id"], "label": 5})
    assert status == 400 and "not a class in 0..1" in body["detail"]
    assert not read_queue(lake, conf.queue).labelled()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
                    reason="needs Debian's chromium and chromium-driver")
def test_a_key_press_on_the_page_lands_in_the_lake_and_a_full_batch_queries_the_next(page):
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, lake, conf = page
    with chrome() as driver:
        driver.get(f"{base}/?who=tester")
        wait = WebDriverWait(driver, 60)

        def ready_item(d):
            body = d.find_element(By.TAG_NAME, "body")
            return body.get_attribute("data-ready") == "1" and body.get_attribute("data-item")

        pressed = []
        for key in ("s", "1"):  # spam by its letter, then ham by its number
            item = wait.until(ready_item)
            assert driver.find_element(By.ID, "text").text.strip()
            driver.find_element(By.TAG_NAME, "body").send_keys(key)
            wait.until(lambda d, i=item: ready_item(d) and ready_item(d) != i)
            pressed.append(item)
        state = read_queue(lake, conf.queue)
        assert state.items[pressed[0]].label == 1 and state.items[pressed[1]].label == 0
        assert {state.items[i].who for i in pressed} == {"tester"}
        assert all(state.items[i].at is not None for i in pressed)
        # The seed batch (2 items) is complete: the page queried batch 1.
        assert state.batch == 1 and len(state.pending(1)) == 2
        assert driver.find_element(By.ID, "batch").text == "1"
        assert lake.version(conf.queue) >= 3  # seed batch, two labels, next batch


def test_the_page_opens_a_review_queue(page):
    base, lake, conf = page
    enqueue(lake, "labeling/review", [{"item_id": "x1", "text": "subscribe to me",
                                       "guess": 1, "score": 0.9, "given": 0}], batch=0)
    out = _get(f"{base}/api/next?queue=labeling/review")
    assert out["item"]["item_id"] == "x1" and out["item"]["given_name"] == "ham"
    assert out["item"]["guess_name"] == "spam"
    status, after = _post(f"{base}/api/label", {"queue": "labeling/review", "item_id": "x1",
                                                "label": 1, "who": "reviewer"})
    assert status == 200 and after["item"] is None  # nothing else to review; no query
    assert read_queue(lake, "labeling/review").items["x1"].label == 1
    assert not lake.exists(conf.queue)  # the active-learning queue was not touched
