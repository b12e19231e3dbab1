"""The review console in a real browser (Debian's headless Chromium via selenium) on the real embedded broker.

Posts are flagged by the real pipeline, two ``flagstream console`` processes serve the same topics, and the
test works the queue with the keyboard only, then reads the decision records back from the decisions topic.
Skips cleanly when chromium / chromium-driver are not installed (scripts/install-test-deps.sh installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.kafka import post_bytes, produce, read_all
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT, SECTARIAN_TEXT
from support.process import PipelineThread, ROOT as PROJECT_ROOT

from flagstream.streaming.kafka.broker import free_port
from flagstream.contract.decisions import Decision, parse_decision

pytestmark = pytest.mark.timeout(300)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HOSTILE = ("<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> "
           "\u202eevil\u202c zero\u200bwidth take up arms and fight the crusaders, paradise awaits the martyrs")
CAMPAIGN = "the soldiers of the state will conquer, join the fighters and pledge allegiance to the caliphate"


def _need_browser() -> None:
    pytest.importorskip("selenium")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium / chromium-driver not installed (scripts/install-test-deps.sh installs them)")


class Console:
    """``flagstream console`` as a subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path, reviewer: str, expect_url: bool = True) -> None:
        self.port = free_port()
        env = dict(env, FLAGSTREAM_CONSOLE_PORT=str(self.port))
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "console", "--reviewer", reviewer],
                                    env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=open(log, "wb"))
        line = self.proc.stdout.readline().decode()
        self.line = line
        assert "review console at" in line, (line, log.read_text())
        self.url = line.split("review console at ")[1].split()[0]
        if expect_url:
            assert self.url == f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--window-size=1400,900", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _wait(fn, what: str, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = fn()
        except Exception:  # noqa: BLE001 - element not there yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _queue_ids(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#queue li')].map(li => li.dataset.id)")


def _selected(driver) -> str | None:
    return driver.execute_script("const li = document.querySelector('#queue li.selected'); return li && li.dataset.id")


def _top(record: dict) -> float:
    return max(record["scores"][label] for label in record["labels"])


def test_console_keyboard_review_end_to_end(topics, tmp_path):
    _need_browser()
    from selenium.webdriver.common.by import By

    decisions_topic = topics.posts + ".decisions"
    posts = [
        ("p-prop", PROPAGANDA_TEXT, "en"),
        ("p-sect", SECTARIAN_TEXT, "en"),
        ("p-sect-fr", "that whole group are parasites and traitors, expel them all, wipe them from our land", "fr"),
        ("p-hostile", HOSTILE, "en"),
        ("p-ok", BENIGN_TEXT, "en"),
    ]
    # a campaign: one propaganda text reposted with retweet prefixes, changed links and a swapped word
    campaign_posts = [
        ("c-1", CAMPAIGN + " https://t.co/aaaa", "en"),
        ("c-2", "RT @acct_9: " + CAMPAIGN + " https://t.co/bbbb", "en"),
        ("c-3", CAMPAIGN.replace("conquer", "prevail") + " https://t.co/cccc", "en"),
    ]
    produce(topics.bootstrap, topics.posts,
            [(pid.encode(), post_bytes(pid, text, lang=lang)) for pid, text, lang in posts + campaign_posts])
    runner = PipelineThread(topics.settings())
    try:
        read_all(topics.bootstrap, topics.scores, min_count=len(posts) + len(campaign_posts), timeout_s=90)
    finally:
        runner.stop()
    review = {json.loads(r.value)["id"]: json.loads(r.value) for r in read_all(topics.bootstrap, topics.review)}
    assert "p-ok" not in review and {"p-prop", "p-sect", "p-hostile"} <= set(review)
    # the pipeline groups the reposts into one campaign with a running count, and nothing else with them
    camp = {pid: r["campaign"]["id"] for pid, r in review.items()}
    assert len({camp[pid] for pid, *_ in campaign_posts}) == 1
    campaign_id = camp["c-1"]
    assert sorted(review[pid]["campaign"]["members"] for pid, *_ in campaign_posts) == [1, 2, 3]
    assert sorted(pid for pid in review if camp[pid] == campaign_id) == sorted(pid for pid, *_ in campaign_posts)
    groups: dict[str, list[str]] = {}
    for pid in review:
        groups.setdefault(camp[pid], []).append(pid)
    group_score = {c: max(_top(review[m]) for m in members) for c, members in groups.items()}

    env = topics.env(decisions_topic=decisions_topic)
    a = Console(env, tmp_path / "console-a.log", "rv-a")
    b = Console(env, tmp_path / "console-b.log", "rv-b")
    driver = _browser()
    try:
        driver.get(a.url)
        _wait(lambda: driver.execute_script("return document.body.dataset.ready"), "the page to load")
        # every flagged post (a campaign counted once) in score order, highest first
        expected_rows = len(groups)
        _wait(lambda: len(_queue_ids(driver)) == expected_rows, f"{expected_rows} queue rows")
        ids = _queue_ids(driver)
        shown_scores = [group_score[camp[i]] for i in ids]
        assert shown_scores == sorted(shown_scores, reverse=True), (ids, shown_scores)

        # hostile text: shown as text, nothing executed, hidden characters made visible
        body = driver.find_element(By.TAG_NAME, "body")
        while _selected(driver) != "p-hostile":
            body.send_keys("j")
            time.sleep(0.15)
        _wait(lambda: driver.execute_script("return document.querySelector('#item').dataset.key")
              == "c:" + camp["p-hostile"], "the hostile item to open")
        text = driver.find_element(By.CSS_SELECTOR, "#item .text").text
        assert "<script>window.__pwned=1</script>" in text and "<img src=x" in text
        assert "\\u202e" in text and "\\u200b" in text and "\u202e" not in text
        assert driver.execute_script("return window.__pwned") is None
        assert driver.find_elements(By.CSS_SELECTOR, "#item script, #item img, #queue script, #queue img") == []

        # reject the highest-scored post with the keyboard only (k back to the top, then r per flagged label)
        for _ in range(len(ids)):
            body.send_keys("k")
            time.sleep(0.1)
        _wait(lambda: driver.execute_script("return document.querySelector('#item').dataset.key") == "c:" + camp[ids[0]],
              "the top item to open")
        top_key = driver.execute_script("return document.querySelector('#item').dataset.key")
        top_record = review[ids[0]]
        for _ in top_record["labels"]:
            body.send_keys("r")
            time.sleep(0.2)
        _wait(lambda: ids[0] not in _queue_ids(driver), "the rejected post to leave the queue")
        assert ids[0] not in [pid for pid, *_ in campaign_posts]

        # order by campaign size (o), open the campaign (it is first), show members (m), confirm all (C)
        body.send_keys("o")
        _wait(lambda: _queue_ids(driver) and _queue_ids(driver)[0].startswith("c-"), "campaign first")
        _wait(lambda: driver.execute_script("return document.querySelector('#item').dataset.key") == "c:" + campaign_id,
              "the campaign to open")
        body.send_keys("m")
        _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#item .members li")) == 3, "3 campaign members")
        driver.save_screenshot(str(PROJECT_ROOT / "docs" / "console.png"))
        body.send_keys("C")
        _wait(lambda: not any(i.startswith("c-") for i in _queue_ids(driver)), "the campaign to leave the queue")
        campaign_ids = sorted(pid for pid, *_ in campaign_posts)

        # the stats panel counts them
        _wait(lambda: driver.find_element(By.CSS_SELECTOR, "[data-stat='decisions']").text
              == "2", "decisions in the stats panel")

        # decision records on the topic
        recs = read_all(topics.bootstrap, decisions_topic, min_count=2)
        decided = [parse_decision(r.value) for r in recs]
        assert all(isinstance(d, Decision) for d in decided)
        first = decided[0]
        assert sorted(first.ids) == sorted(groups[camp[ids[0]]]) and first.reviewer == "rv-a"
        assert first.verdicts == {label: "reject" for label in top_record["labels"]}
        assert first.model == top_record["model"] and {r.id for r in first.reviews} == set(first.ids)
        assert sorted(decided[1].ids) == campaign_ids
        assert set(decided[1].verdicts.values()) == {"confirm"} and decided[1].campaign == campaign_id

        # the second console never shows a decided item again after refresh
        driver.get(b.url)
        _wait(lambda: driver.execute_script("return document.body.dataset.ready"), "console B to load")
        gone = set(first.ids) | set(campaign_ids)
        _wait(lambda: (q := _queue_ids(driver)) and not gone & set(q) and len(q) == expected_rows - 2,
              "console B to drop the decided items")
        assert top_key
    finally:
        driver.quit()
        a.close()
        b.close()


def test_console_refuses_non_loopback_without_token(topics):
    from support.process import run_cli

    res = run_cli(["console", "--console-host", "0.0.0.0"], env=topics.env())
    err = res.stderr.decode()
    assert res.returncode == 2 and "FLAGSTREAM_CONSOLE_TOKEN" in err and "Traceback" not in err, err


def test_demo_ends_with_the_console_address_and_serves_decisions(linear_model_dir):
    """``flagstream demo``: post -> review -> console -> decision on one embedded broker, then SIGTERM."""
    import signal
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    env.update(FLAGSTREAM_CONSOLE_PORT="0", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "demo", "--console", "--model", str(linear_model_dir)],
                            env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = []
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            assert line, (lines[-20:], proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "")
            lines.append(line)
            if line.startswith("review console at "):
                break
        assert "=== summary ===\n" in lines
        url = lines[-1].split()[3]

        def call(path: str, body: dict | None = None) -> dict:
            req = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode() if body else None,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        rows = _wait(lambda: call("/api/queue")["rows"], "the demo's flagged posts in the console")
        item = call("/api/item?key=" + urllib.request.quote(rows[0]["key"]))
        done = call("/api/decide", {"key": rows[0]["key"], "verdicts": {item["labels"][0]: "confirm"}})
        assert rows[0]["id"] in done["ids"]
        assert call("/api/stats")["decisions"] == 1
        assert rows[0]["key"] not in [r["key"] for r in call("/api/queue")["rows"]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read().decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_console_token_host_and_content_type_checks(topics, tmp_path):
    """Bound beyond loopback the API needs the token; on loopback a foreign Host is refused; decisions are JSON only."""
    import urllib.error
    import urllib.request

    def status(url: str, headers: dict | None = None, data: bytes | None = None) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}), timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    token = "t0k3n-" + "x" * 20
    remote = Console(dict(topics.env(), FLAGSTREAM_CONSOLE_HOST="0.0.0.0", FLAGSTREAM_CONSOLE_TOKEN=token),
                     tmp_path / "remote.log", "rv-r", expect_url=False)
    local = Console(topics.env(), tmp_path / "local.log", "rv-l")
    try:
        base = f"http://127.0.0.1:{remote.port}"
        assert "#token=" not in remote.url and token not in remote.line  # stdout ends up in pod logs
        assert status(base + "/api/queue") == 401
        assert status(base + "/api/queue", {"X-Flagstream-Token": token[:-1] + "y"}) == 401
        assert status(base + "/api/queue", {"X-Flagstream-Token": token}) == 200
        assert status(base + "/") == 200  # the page itself holds no data
        assert status(base + "/api/decide", {"X-Flagstream-Token": token, "Content-Type": "text/plain"},
                      b'{"key": "p:x", "verdicts": {"propaganda": "reject"}}') == 415
        assert status(base + "/api/decide", {"X-Flagstream-Token": token, "Content-Type": "application/json"},
                      b'{"key": "p:none", "verdicts": {"propaganda": "reject"}}') == 409
        assert status(local.url + "api/queue") == 200
        assert status(local.url + "api/queue", {"Host": "evil.example:80"}) == 400
        assert "t0k3n" not in (tmp_path / "remote.log").read_text()
    finally:
        remote.close()
        local.close()
