"""End to end: `python -m abm.viz.server` serves the app and headless Chromium uses it offline.

Every request to a host other than 127.0.0.1/localhost is aborted and fails the test, so a
passing run proves the page renders without internet. The screenshot is left in
`test-artifacts/viz.png`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from browser import ARTIFACTS, OfflinePage, VizServer, chromium, ensure_chromium

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

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
COUNTER = re.compile(r"^Time: ")


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


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


def open_app(browser, server: VizServer) -> OfflinePage:
    watched = OfflinePage.open(browser, viewport={"width": 1600, "height": 1300})
    watched.page.goto(server.url)
    # The five charts are drawn (ECharts canvases) and the step counter is shown.
    watched.page.locator(".wsf-chart canvas").nth(4).wait_for(timeout=WAIT_MS)
    watched.page.get_by_text(COUNTER).wait_for(timeout=WAIT_MS)
    return watched


def counter(watched: OfflinePage) -> str:
    return watched.page.get_by_text(COUNTER).inner_text().strip()


def price_chart_pixels(watched: OfflinePage) -> str:
    return watched.page.locator(".wsf-chart canvas").first.evaluate("c => c.toDataURL()")


def assert_no_errors(watched: OfflinePage) -> None:
    page = watched.page
    assert watched.problems() == []
    assert "Traceback" not in page.inner_text("body")
    assert page.locator(".v-alert.error").count() == 0


def test_step_redraws_the_page_offline_and_sessions_are_separate(
    server: VizServer, browser, record_property
) -> None:
    first = open_app(browser, server)
    page = first.page
    shot = ARTIFACTS / "viz.png"
    try:
        assert counter(first) == "Time: 0.0"
        pixels_before = price_chart_pixels(first)
        rows_before = page.locator(".wsf-round-table tbody tr").count()

        latencies_ms = []
        for step in range(1, STEPS + 1):
            started = time.perf_counter()
            page.get_by_role("button", name="Step", exact=True).click()
            page.get_by_text(f"Time: {step}.0", exact=True).wait_for(timeout=WAIT_MS)
            latencies_ms.append((time.perf_counter() - started) * 1000)
        record_property("step_click_to_counter_ms", [round(x) for x in latencies_ms])
        print(f"click -> step counter (ms): {[round(x) for x in latencies_ms]}")

        # The charts follow the model: the price chart's pixels changed, and the round table
        # now lists the latest round for every client (a round runs every 2 steps).
        page.wait_for_function("before => document.querySelector('.wsf-chart canvas')"
                               ".toDataURL() !== before", arg=pixels_before, timeout=WAIT_MS)
        assert rows_before == 0
        page.locator(".wsf-round-table tbody tr").nth(N_CLIENTS - 1).wait_for(timeout=WAIT_MS)
        assert page.locator(".wsf-round-table tbody tr").count() == N_CLIENTS
        assert "round 1 ran at step 2" in page.locator(".wsf-round-caption").inner_text()
    finally:
        # The screenshot is the artifact to look at, above all when something failed.
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert_no_errors(first)

    # A second browser session gets its own model: it starts at step 0 while the first
    # stays at step 3.
    second = open_app(browser, server)
    assert counter(second) == "Time: 0.0"
    assert counter(first) == f"Time: {STEPS}.0"
    assert_no_errors(second)


def steps_shown(watched: OfflinePage) -> int:
    return int(float(counter(watched).removeprefix("Time: ")))


def test_play_pause_and_reset_with_changed_controls(server: VizServer, browser) -> None:
    watched = open_app(browser, server)
    page = watched.page
    page.get_by_role("button", name="▶", exact=True).click()
    page.wait_for_function("() => /Time: ([3-9]|\\d\\d)/.test(document.body.innerText)",
                           timeout=WAIT_MS)
    page.get_by_role("button", name="❚❚", exact=True).click()
    page.get_by_role("button", name="▶", exact=True).wait_for(timeout=WAIT_MS)
    # Mesa's play loop may finish the step it had started when Pause was clicked.
    page.wait_for_timeout(1000)
    paused_at = steps_shown(watched)
    page.wait_for_timeout(1000)
    assert steps_shown(watched) == paused_at >= 3
    assert "buyback rewards" in page.locator(".wsf-settings-caption").inner_text()

    page.locator(".v-select").filter(has_text="Reward policy").click()
    page.get_by_role("option", name="mint", exact=True).click()
    page.get_by_role("button", name="Reset", exact=True).click()

    page.get_by_text("Time: 0.0", exact=True).wait_for(timeout=WAIT_MS)
    caption = page.locator(".wsf-settings-caption")
    caption.filter(has_text="mint rewards").wait_for(timeout=WAIT_MS)
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
