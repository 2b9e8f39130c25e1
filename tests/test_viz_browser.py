"""End to end: `python -m abm.viz.server` serves the app and headless Chromium uses it offline.

Every request to a host other than 127.0.0.1/localhost is aborted and fails the test, so a
passing run proves the page renders without internet. Screenshots of the three pages are left
in `test-artifacts/` (git-ignored): `viz-market.png`, `viz-agents.png`, `viz-twin.png`.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from browser import ARTIFACTS, OfflinePage, VizServer, chromium, ensure_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

#: A small, fast scenario: 3 clients, an FL round every 2 steps.
SCENARIO = """\
name: viz-e2e
seed: 11
steps: 40
round_every: 2
fl:
  dataset: {name: digits, n_samples: 300}
  model: logreg
contribution: {method: leave_one_out}
rewards:
  policy: buyback
  budget: {amount: 300.0}
clients:
  - {count: 2}
  - {count: 1, behaviour: free_rider}
investors:
  - {strategy: fundamental, count: 2}
  - {strategy: noise, count: 2}
liquidity_providers:
  - {count: 1}
"""
N_CLIENTS = 3
STEPS = 3
#: Milliseconds to wait for the page, a chart, or a step to show.
WAIT_MS = 30_000
COUNTER = re.compile(r"^Step \d+ of 40$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    ensure_chromium()  # install (or skip/fail) before paying for a server start
    folder = tmp_path_factory.mktemp("viz")
    scenario = folder / "scenario.yaml"
    scenario.write_text(SCENARIO)
    with VizServer(scenario, log_path=folder / "server.log") as running:
        yield running
        log = running.log()
    assert "Traceback" not in log, log
    # Solara's 12-line SameSite cookie warning is filtered out (abm.viz.server).
    assert "samesite" not in log.lower(), log


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


def open_app(browser, server: VizServer, **context: object) -> OfflinePage:
    watched = OfflinePage.open(browser, viewport={"width": 1600, "height": 1300}, **context)
    watched.page.goto(server.url)
    # The five market charts are drawn (ECharts canvases) and the step counter is shown.
    watched.page.locator(".wsf-chart canvas").nth(4).wait_for(timeout=WAIT_MS)
    watched.page.locator(".wsf-step-counter").wait_for(timeout=WAIT_MS)
    return watched


def counter(watched: OfflinePage) -> str:
    return watched.page.locator(".wsf-step-counter").inner_text().strip()


def step(watched: OfflinePage, to: int) -> None:
    """Click Step and wait until the counter shows step `to`."""
    watched.page.get_by_role("button", name="Step", exact=True).click()
    watched.page.get_by_text(f"Step {to} of 40", exact=True).wait_for(timeout=WAIT_MS)


def price_chart_pixels(watched: OfflinePage) -> str:
    return watched.page.locator(".wsf-chart canvas").first.evaluate("c => c.toDataURL()")


def assert_no_errors(watched: OfflinePage) -> None:
    page = watched.page
    assert watched.problems() == []
    assert "Traceback" not in page.inner_text("body")
    assert page.locator(".v-alert.error").count() == 0


def screenshot(watched: OfflinePage, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    watched.page.screenshot(path=str(ARTIFACTS / name))
    assert (ARTIFACTS / name).stat().st_size > 10_000


def test_market_page_steps_offline_and_sessions_are_separate(server, browser) -> None:
    first = open_app(browser, server)
    page = first.page
    try:
        assert counter(first) == "Step 0 of 40"
        body = page.inner_text("body")
        assert "Time:" not in body and "Page 0" not in body.title()
        assert [t.strip() for t in page.get_by_role("tab").all_inner_texts()] == [
            "MARKET", "AGENTS", "COUNTERFACTUAL TWIN"]
        pixels_before = price_chart_pixels(first)
        # Before the first round the table lists the clients at their genesis prices.
        assert page.locator(".wsf-round-table tbody tr").count() == N_CLIENTS
        for n in range(1, STEPS + 1):
            step(first, n)
        # The charts follow the model: the price chart's pixels changed, and the round table
        # lists the latest round for every client (a round runs every 2 steps).
        page.wait_for_function("before => document.querySelector('.wsf-chart canvas')"
                               ".toDataURL() !== before", arg=pixels_before, timeout=WAIT_MS)
        page.get_by_text("round 1 ran at step 2", exact=False).wait_for(timeout=WAIT_MS)
        assert page.locator(".wsf-round-table tbody tr").count() == N_CLIENTS
    finally:
        # The screenshot is the artifact to look at, above all when something failed.
        screenshot(first, "viz-market.png")
    assert_no_errors(first)

    # A second browser session gets its own model: it starts at step 0 while the first
    # stays at step 3.
    second = open_app(browser, server)
    assert counter(second) == "Step 0 of 40"
    assert counter(first) == f"Step {STEPS} of 40"
    assert_no_errors(second)


def test_every_control_shows_its_value_and_it_changes_when_moved(server, browser) -> None:
    watched = open_app(browser, server)
    page = watched.page
    sliders = page.locator(".v-navigation-drawer .v-input").filter(
        has=page.get_by_role("slider"))
    assert sliders.count() == 10  # 5 strategies, budget, fee, seed, play interval, redraw
    for i in range(sliders.count()):
        control = sliders.nth(i)
        label = control.locator(".v-label")
        before = label.inner_text()
        assert re.search(r": [\d,.]+( |$)", before), before  # "Swap fee: 30 bps"
        control.get_by_role("slider").focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([el, text]) => el.innerText !== text",
                               arg=[label.element_handle(), before], timeout=WAIT_MS)
        assert label.inner_text().split(":")[0] == before.split(":")[0]
    for name, choice in (("Reward policy", "mint"), ("Contribution method", "cosine")):
        select = page.locator(".v-select").filter(has_text=name)
        select.click()
        page.get_by_role("option", name=choice, exact=True).click()
        select.locator(".v-select__selection").filter(has_text=choice).wait_for(
            timeout=WAIT_MS)
    # Play, pause, and Reset with the changed knobs.
    page.get_by_role("button", name="▶", exact=True).click()
    page.wait_for_function("() => /Step ([3-9]|\\d\\d) of/.test(document.body.innerText)",
                           timeout=WAIT_MS)
    page.get_by_role("button", name="❚❚", exact=True).click()
    page.get_by_role("button", name="▶", exact=True).wait_for(timeout=WAIT_MS)
    assert "buyback rewards" in page.locator(".wsf-settings-caption").inner_text()
    page.get_by_role("button", name="Reset", exact=True).click()
    page.get_by_text("Step 0 of 40", exact=True).wait_for(timeout=WAIT_MS)
    caption = page.locator(".wsf-settings-caption")
    caption.filter(has_text="mint rewards").wait_for(timeout=WAIT_MS)
    assert "cosine contributions" in caption.inner_text()
    assert "fee 31 bps" in caption.inner_text() and "seed 12" in caption.inner_text()
    assert_no_errors(watched)


def test_agents_and_twin_pages_render_and_update_on_step(server, browser) -> None:
    watched = open_app(browser, server)
    page = watched.page
    try:
        step(watched, 1)
        page.get_by_role("tab", name="Agents").click()
        title = page.get_by_text(re.compile(r"^Largest holders per token, step \d+$"))
        title.wait_for(timeout=WAIT_MS)
        assert title.inner_text() == "Largest holders per token, step 1"
        assert page.locator(".wsf-holders-table tbody tr").count() == N_CLIENTS
        assert page.locator(".wsf-chart canvas").count() == 3
        step(watched, 2)
        page.get_by_text("Largest holders per token, step 2", exact=True).wait_for(
            timeout=WAIT_MS)
        page.get_by_text("c00's token: its largest holders at step 2").wait_for(timeout=WAIT_MS)
        screenshot(watched, "viz-agents.png")

        page.get_by_role("tab", name="Counterfactual twin").click()
        caption = page.locator(".wsf-twin-caption")
        caption.wait_for(timeout=WAIT_MS)
        assert "opened at step 2" in caption.inner_text()
        assert page.locator(".wsf-twin-table tbody tr").count() == N_CLIENTS
        step(watched, 3)
        caption.filter(has_text="at step 3.").wait_for(timeout=WAIT_MS)
        page.locator(".wsf-chart canvas").nth(1).wait_for(timeout=WAIT_MS)
    finally:
        screenshot(watched, "viz-twin.png")
    assert_no_errors(watched)


def test_downloads_are_the_tables_and_the_scenario_reproduces_them(server, browser,
                                                                    tmp_path) -> None:
    watched = open_app(browser, server, accept_downloads=True)
    page = watched.page
    for n in range(1, STEPS + 1):
        step(watched, n)
    files = {}
    for name in ("model-parquet", "model-csv", "agents-parquet", "agents-csv",
                 "rounds-parquet", "rounds-csv", "scenario-yaml"):
        with page.expect_download(timeout=WAIT_MS) as download:
            page.locator(f".wsf-download-{name}").click()
        files[name] = tmp_path / download.value.suggested_filename
        download.value.save_as(files[name])
    tables = {}
    for name in ("model", "agents", "rounds"):
        tables[name] = pd.read_parquet(files[f"{name}-parquet"])
        pd.testing.assert_frame_equal(pd.read_csv(files[f"{name}-csv"]),
                                      pd.read_csv(io.StringIO(tables[name].to_csv(index=False))))
    assert len(tables["model"]) == STEPS + 1  # genesis + the steps taken
    assert tables["model"]["step"].tolist() == list(range(STEPS + 1))
    n_agents = tables["agents"]["agent_id"].nunique()
    assert len(tables["agents"]) == (STEPS + 1) * n_agents
    assert len(tables["rounds"]) == N_CLIENTS  # one round (step 2)

    scenario = files["scenario-yaml"]
    assert scenario.name == "viz-e2e-seed11-scenario.yaml"
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "abm.cli", "validate", str(scenario)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "abm.cli", "run", str(scenario), "--steps",
                           str(STEPS), "--out", str(run), "--no-report"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, pd.read_parquet(run / f"{name}.parquet"))
    assert_no_errors(watched)


def test_server_listens_on_loopback_only(server: VizServer) -> None:
    # /proc/net/tcp lists listening sockets (state 0A) as hex "address:port".
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == server.port:
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, little-endian hex; nothing on 0.0.0.0/::


# -- the page always shows the model's current step ----------------------------------------------

def settled_step(watched: OfflinePage) -> int:
    """The counter's step once it has stopped changing for a second (a step in flight when
    Pause was pressed has landed)."""
    page, last, since = watched.page, None, 0.0
    for _ in range(WAIT_MS // 250):
        text = counter(watched)
        assert COUNTER.match(text), text
        if text == last:
            since += 0.25
            if since >= 1.0:
                return int(text.split()[1])
        else:
            last, since = text, 0.0
        page.wait_for_timeout(250)
    raise AssertionError(f"the step counter never settled (last: {last})")


def model_steps_downloaded(watched: OfflinePage, tmp_path: Path) -> int:
    """The model's own step, read from outside the counter: the rows of the downloaded model
    table, less the genesis row."""
    page = watched.page
    with page.expect_download(timeout=WAIT_MS) as download:
        page.locator(".wsf-download-model-parquet").click()
    path = tmp_path / f"model-{len(list(tmp_path.iterdir()))}.parquet"
    download.value.save_as(path)
    return len(pd.read_parquet(path)) - 1


def play_until(watched: OfflinePage, at_least: int) -> int:
    """Press Play, wait until the counter reaches `at_least`, press Pause; the step the
    counter then settles on."""
    page = watched.page
    page.get_by_role("button", name="▶", exact=True).click()
    page.wait_for_function(
        "n => { const m = /Step (\\d+) of/.exec(document.querySelector('.wsf-step-counter')"
        ".innerText); return m && +m[1] >= n; }", arg=at_least, timeout=WAIT_MS * 2)
    page.get_by_role("button", name="❚❚", exact=True).click()
    page.get_by_role("button", name="▶", exact=True).wait_for(timeout=WAIT_MS)
    return settled_step(watched)


def test_after_play_pause_tab_switches_and_reset_the_page_shows_the_models_step(
        server, browser, tmp_path) -> None:
    """Issue 24: after Play / Pause the counter read "Step 0" with empty charts, and after a
    tab switch the counter went back to step 0. Every state below is checked against the
    model's own step (its downloaded table) and left as a screenshot `viz-state-*.png`."""
    watched = open_app(browser, server, accept_downloads=True)
    page = watched.page
    empty_prices = price_chart_pixels(watched)
    shot = "viz-state-1-paused.png"
    try:
        # 1. Play, then Pause: the counter, the round table and the price chart are the
        #    model's at the step it paused on.
        paused = play_until(watched, 6)
        assert paused >= 6
        assert model_steps_downloaded(watched, tmp_path) == paused
        assert price_chart_pixels(watched) != empty_prices
        latest_round = paused - paused % 2  # a round every 2 steps
        page.get_by_text(f"ran at step {latest_round}", exact=False).wait_for(timeout=WAIT_MS)
        screenshot(watched, shot)
        # ... and the next Step is the one after it (it used to jump from "0" to "114").
        shot = "viz-state-2-stepped.png"
        step(watched, paused + 1)
        assert model_steps_downloaded(watched, tmp_path) == paused + 1
        screenshot(watched, shot)

        # 2. Market -> Agents: the counter keeps the step and the panels show it.
        shot = "viz-state-3-agents-tab.png"
        page.get_by_role("tab", name="Agents").click()
        page.get_by_text(f"Largest holders per token, step {paused + 1}",
                         exact=True).wait_for(timeout=WAIT_MS)
        assert counter(watched) == f"Step {paused + 1} of 40"
        screenshot(watched, shot)
        # Play and Pause on the Agents page, then back to Market: still the model's step.
        shot = "viz-state-4-market-tab-after-play.png"
        again = play_until(watched, paused + 4)
        page.get_by_text(f"Largest holders per token, step {again}",
                         exact=True).wait_for(timeout=WAIT_MS)
        page.get_by_role("tab", name="Market").click()
        page.locator(".wsf-chart canvas").nth(4).wait_for(timeout=WAIT_MS)
        assert counter(watched) == f"Step {again} of 40"
        assert model_steps_downloaded(watched, tmp_path) == again
        page.get_by_text(f"ran at step {again - again % 2}", exact=False).wait_for(
            timeout=WAIT_MS)
        assert price_chart_pixels(watched) != empty_prices
        screenshot(watched, shot)

        # 3. Reset with a changed knob: step 0 of the new model, then Step answers at once
        #    (once it stalled for over a minute) and Play / Pause still track the model.
        shot = "viz-state-5-reset.png"
        fee = page.locator(".v-navigation-drawer .v-input").filter(has_text="Swap fee")
        fee.get_by_role("slider").focus()
        page.keyboard.press("ArrowRight")
        page.get_by_role("button", name="Reset", exact=True).click()
        page.get_by_text("Step 0 of 40", exact=True).wait_for(timeout=WAIT_MS)
        page.locator(".wsf-settings-caption").filter(has_text="fee 31 bps").wait_for(
            timeout=WAIT_MS)
        assert model_steps_downloaded(watched, tmp_path) == 0
        screenshot(watched, shot)
        shot = "viz-state-6-after-reset.png"
        for n in (1, 2):
            started = time.monotonic()
            step(watched, n)
            assert time.monotonic() - started < 15, "Step after Reset took over 15 s"
        after = play_until(watched, 5)
        assert model_steps_downloaded(watched, tmp_path) == after
        page.get_by_text(f"ran at step {after - after % 2}", exact=False).wait_for(
            timeout=WAIT_MS)
        screenshot(watched, shot)
    except BaseException:
        screenshot(watched, shot.replace(".png", "-failed.png"))
        raise
    assert_no_errors(watched)
