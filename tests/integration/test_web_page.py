"""The time-slider page of `rewind serve`, in a real browser (Debian's chromium via Playwright), against the oracle.

One small world for the module: a 200-order workload produced to Kafka except the last event of one
order (the *target*), `rewind run order-status` (batch engine) following the topic, and `rewind serve`
replicating its view topic. The page is driven like a person would: a version clicked in the
timeline, the slider set to a time and dragged with the mouse, Live switched on while the held-back
event is produced. What it shows is compared with the workload's oracle (scripts/workload/oracle.py,
which knows each order's status at any time from the generated events alone), never with the API.

Each test keeps a screenshot under .run/artifacts/ and prints its path.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from pipelines.readback import data_end_offsets
from pipelines.settings import RewindSettings
from pipelines.topics import VIEW_TOPIC_CONFIG, ensure_topic, view_topic
from scripts.workload import Emitted, Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from tests.integration.support import PipelineProcess, group_caught_up, isolated_settings, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".run" / "artifacts"
VIEW = "order-status"
#: How long the page may take to show an answer (it asks the API on the same machine).
SHOWN_MS = 10_000
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"]


@dataclass(frozen=True)
class World:
    """The served world: where the page is, the oracle, the target order and its held-back records."""

    base_url: str
    settings: RewindSettings
    oracle_path: Path
    target: str
    held: tuple[Emitted, ...]
    #: When the held-back event becomes visible: before it, the served history is the oracle's exactly.
    held_visible_ms: int
    name: str


def _pick_target(records: tuple[Emitted, ...], oracle: Oracle) -> tuple[str, int]:
    """An order with at least five events whose last event is later than all its others (it makes a version of its
    own) and changes the order's status (so Live has something to show)."""
    events: dict[str, dict[int, int]] = {}
    for r in records:
        if r.poison is None and r.seq is not None:
            events.setdefault(r.order_id, {})[r.seq] = r.timestamp_ms
    for order_id in sorted(events):
        by_seq = events[order_id]
        last = max(by_seq)
        if len(by_seq) >= 5 and all(t < by_seq[last] for s, t in by_seq.items() if s != last):
            if oracle.order_status_as_of(order_id, by_seq[last] - 1) != oracle.order_status_as_of(order_id, by_seq[last]):
                return order_id, last
    raise AssertionError("no order in the workload has five events and a last one later than the rest that changes its status")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _replica_reached(world_url: str, settings: RewindSettings, probe_key: str) -> None:
    """Wait until `rewind serve` applied the whole view topic as it is now (the API's own min_position wait)."""
    topic = view_topic(VIEW, prefix=settings.view_topic_prefix)
    ends = data_end_offsets(settings.bootstrap(), topic)
    needed = ",".join(f"{topic}:{p}:{o}" for p, o in sorted(ends.items()))
    response = httpx.get(f"{world_url}/views/{VIEW}/{quote(probe_key, safe='')}", params={"min_position": needed, "wait_ms": 30_000}, timeout=40)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Produce all but the target's last event, fold them live, serve them; stop both cleanly afterwards."""
    tmp = tmp_path_factory.mktemp("web")
    name = f"t-web-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(kafka_bootstrap, name, tmp, engine="batch", commit_interval_s=0.5)
    workload = generate(WorkloadConfig(seed=15, orders=200, days=2))
    oracle_path = tmp / "oracle.sqlite"
    write_oracle(workload, oracle_path, topic=settings.orders_topic)
    with Oracle.open(oracle_path) as oracle:
        target, last_seq = _pick_target(workload.records, oracle)
        final = oracle.order_as_of(target, 2**62)
    held = tuple(r for r in workload.records if r.order_id == target and r.seq == last_seq)
    produce_workload(settings, [r for r in workload.records if r not in held], progress=False)
    assert final is not None and final.last_seq == last_seq

    # The view topic as the pipeline creates it, made now: a replica started before it exists finds it only at its
    # next metadata refresh (5 s).
    ensure_topic(kafka_bootstrap, view_topic(VIEW, prefix=settings.view_topic_prefix), partitions=settings.orders_partitions, config=VIEW_TOPIC_CONFIG)
    group = f"{name}-{VIEW}"
    pipeline = PipelineProcess.start(settings, VIEW, group=group, state_dir=tmp / "pipeline", log_dir=tmp / "logs")
    port = _free_port()
    serve_log = (tmp / "serve.log").open("w")
    serve = subprocess.Popen(
        [sys.executable, "-c", "from scripts.cli import main; main()", "serve", "--port", str(port),
         "--view-topic-prefix", settings.view_topic_prefix, "--replica-dir", str(tmp / "replica"),
         "--kafka-bootstrap-servers", kafka_bootstrap],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=serve_log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            assert serve.poll() is None, (tmp / "serve.log").read_text()
            try:
                return httpx.get(f"{base_url}/views", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout_s=30, what="rewind serve to answer")
        wait_until(lambda: group_caught_up(kafka_bootstrap, group, settings.orders_topic) or not pipeline.alive(),
                   timeout_s=90, what="the pipeline to fold the produced records", interval_s=0.5)
        assert pipeline.alive(), pipeline.output_tail()
        _replica_reached(base_url, settings, target)
        yield World(base_url, settings, oracle_path, target, held, final.valid_from_ms, name)
    finally:
        serve.send_signal(signal.SIGTERM)  # both stop at once: each waits for its own clean shutdown
        try:
            pipeline.terminate()
            serve_code = serve.wait(30)
        finally:
            if serve.poll() is None:
                serve.kill()
            serve_log.close()
    assert serve_code == 0, (tmp / "serve.log").read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """Headless Debian chromium with a fresh profile (never a downloaded browser: no `playwright install`)."""
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: scripts/ensure-apt-tools.sh installs Debian's chromium"
    with tempfile.TemporaryDirectory(prefix="rewind-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport={"width": 1000, "height": 700},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A new tab that fails the test on any script error of the page."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    tab.close()
    assert not errors, f"the page threw: {errors}"


def _open(page: Page, world: World, **fragment: str) -> None:
    page.goto(f"{world.base_url}/#{urlencode({'view': VIEW, **fragment})}")


def _settled(page: Page, *, as_of_ms: int | None = None, state: str = "ready") -> None:
    """Wait until the page shows its answer (as of ``as_of_ms`` when given)."""
    result = page.locator("#result")
    expect(result).to_have_attribute("data-state", state, timeout=SHOWN_MS)
    if as_of_ms is not None:
        expect(result).to_have_attribute("data-as-of-ms", str(as_of_ms), timeout=SHOWN_MS)
        expect(result).to_have_attribute("data-state", state, timeout=SHOWN_MS)


def _shown(page: Page) -> tuple[str, int, int]:
    """The status, lastSeq and valid_from (ms) the page shows for the row."""
    status = page.locator('#row tr[data-field="status"] td').inner_text()
    last_seq = int(page.locator('#row tr[data-field="lastSeq"] td').inner_text())
    shown = page.locator("#row-valid-from").inner_text()
    found = re.fullmatch(r".*\((-?\d+)\)", shown)
    assert found is not None, f"valid_from shown as {shown!r}, without its epoch milliseconds in brackets"
    valid_from_ms = int(found.group(1))
    return status, last_seq, valid_from_ms


def _expect_oracle(page: Page, oracle: Oracle, target: str, t_ms: int) -> str:
    truth = oracle.order_as_of(target, t_ms)
    assert truth is not None, f"the oracle has no {target} at {t_ms}: choose a time inside its history"
    assert _shown(page) == (str(truth.status), truth.last_seq, truth.valid_from_ms), f"{target} as of {t_ms}"
    return str(truth.status)


def _screenshot(page: Page, world: World, what: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"web-page-{what}-{world.name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def test_the_slider_shows_the_oracles_status_at_each_time(world: World, page: Page) -> None:
    """Scenario: an order's page; a timeline version clicked, the slider set to a time, then dragged with the mouse,
    then moved before the order existed. We expect the status, lastSeq and valid_from the oracle gives at each
    slider time, every timeline version to be the oracle's, and a clear "no row" before the first version."""
    _open(page, world, key=world.target)
    _settled(page)
    versions = page.locator("#versions button")
    with Oracle.open(world.oracle_path) as oracle:
        # The timeline: every version's status is the oracle's at its valid_from, in time order.
        times = [int(ms) for ms in versions.evaluate_all("buttons => buttons.map(b => b.dataset.validFromMs)")]
        assert len(times) >= 4 and times == sorted(times)
        for i, t in enumerate(times):
            assert versions.nth(i).locator("b").inner_text() == str(oracle.order_status_as_of(world.target, t))
        assert times[-1] < world.held_visible_ms

        # 1. Clicking a version moves the slider to its valid_from.
        versions.nth(1).click()
        _settled(page, as_of_ms=times[1])
        assert int(page.locator("#slider").input_value()) == times[1]
        _expect_oracle(page, oracle, world.target, times[1])
        _screenshot(page, world, "version")

        # The arrow keys step to the next version; the URL then names that time, and reloading it shows the same row.
        page.locator("#slider").press("ArrowRight")
        _settled(page, as_of_ms=times[2])
        _expect_oracle(page, oracle, world.target, times[2])
        assert f"t={times[2]}" in page.url
        page.reload()
        _settled(page, as_of_ms=times[2])
        _expect_oracle(page, oracle, world.target, times[2])

        # 2. The slider set to a time between two versions.
        between = (times[2] + times[3]) // 2
        page.locator("#slider").fill(str(between))
        _settled(page, as_of_ms=between)
        _expect_oracle(page, oracle, world.target, between)

        # 3. Dragged with the mouse to 40% of its track: whatever time that is, the page shows the oracle's row for it.
        box = page.locator("#slider").bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.9, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.4, y, steps=8)
        page.mouse.up()
        dragged = int(page.locator("#slider").input_value())
        _settled(page, as_of_ms=dragged)
        assert times[0] <= dragged < times[-1], "40% of the track lies inside the history (6% margins either side)"
        _expect_oracle(page, oracle, world.target, dragged)

        # 4. Before the first version: no row, said plainly, and the oracle agrees.
        before = times[0] - 1
        page.locator("#slider").fill(str(before))
        _settled(page, as_of_ms=before, state="none")
        assert oracle.order_as_of(world.target, before) is None
        expect(page.locator("#message")).to_contain_text("No row as of")
        expect(page.locator("#message")).to_contain_text("Its history begins at")
    assert page.locator("#row-panel").is_hidden()


def test_live_follows_a_new_version_as_it_arrives(world: World, page: Page) -> None:
    """Scenario: the target's page with Live on, then its held-back last event produced to Kafka (folded by the running
    pipeline, replicated by rewind serve). We expect the page to show, unasked, the oracle's final status and version."""
    _open(page, world, key=world.target)
    _settled(page)
    count = page.locator("#versions button").count()
    page.locator("#live").check()
    with Oracle.open(world.oracle_path) as oracle:
        before = oracle.order_as_of(world.target, world.held_visible_ms - 1)
        final = oracle.order_as_of(world.target, world.held_visible_ms)
    assert before is not None and final is not None and final.status != before.status
    expect(page.locator("#row-headline")).to_have_attribute("data-value", str(before.status), timeout=SHOWN_MS)

    produce_workload(world.settings, world.held, progress=False)
    expect(page.locator("#row-headline")).to_have_attribute("data-value", str(final.status), timeout=60_000)
    assert _shown(page) == (str(final.status), final.last_seq, final.valid_from_ms)
    expect(page.locator("#versions button")).to_have_count(count + 1)
    assert int(page.locator("#slider").input_value()) == final.valid_from_ms, "the slider moved to the new version"
    assert page.locator("#live").is_checked()
    _screenshot(page, world, "live")


def test_an_index_as_of_a_time_lists_the_oracles_orders(world: World, page: Page) -> None:
    """Scenario: "all SHIPPED orders" as of a typed time inside the history. We expect exactly the orders the oracle
    says were SHIPPED at that time; clicking one opens its history at that same time."""
    with Oracle.open(world.oracle_path) as oracle:
        order_ids = [row.order_id for row in oracle.final_orders()]
        # A time when many orders are SHIPPED, before the held-back event (so the served log holds all it depends on).
        candidates = sorted({e.occurred_at_ms for e in oracle.events() if e.event_type == "OrderShipped" and e.occurred_at_ms < world.held_visible_ms})
        at = candidates[len(candidates) * 2 // 3]
        shipped = {o for o in order_ids if oracle.order_status_as_of(o, at) == "SHIPPED"}
    assert len(shipped) >= 3
    _open(page, world, index="status", value="SHIPPED", limit="1000")
    _settled(page)
    page.locator("#time").fill(str(at))
    page.locator("#time").press("Enter")
    _settled(page, as_of_ms=at)
    keys = set(page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.key)"))
    assert keys == shipped
    expect(page.locator("#rows-title")).to_contain_text(f"{len(shipped)} rows of order-status with status = SHIPPED")
    _screenshot(page, world, "index")

    first = sorted(shipped)[0]
    page.locator(f'#rows tr[data-key="{first}"] button').click()
    _settled(page, as_of_ms=at)
    assert _shown(page)[0] == "SHIPPED"
    expect(page.locator("#key")).to_have_value(first)


def test_bad_input_gets_the_apis_one_line_answer(world: World, page: Page) -> None:
    """Scenario: an unknown key holding URL-special characters, an unknown view, a time outside years 1-9999, a
    path-traversal attempt on the static files. We expect the API's own error detail on the page (the key reached
    the API whole), and a one-line 404 for every path outside the page's files."""
    odd_key = "no/such key?#%ü"
    _open(page, world, key=odd_key)
    _settled(page, state="error")
    expect(page.locator("#message")).to_have_text(f"KeyNotFoundError: {VIEW} has no row {odd_key!r}")

    page.goto(f"{world.base_url}/#{urlencode({'view': 'no-such-view', 'key': 'x'})}")
    _settled(page, state="error")
    expect(page.locator("#message")).to_contain_text("UnknownViewError: unknown view 'no-such-view'")

    _open(page, world, key=world.target)
    _settled(page)
    page.locator("#time").fill("10000-01-01T00:00:00Z")
    page.locator("#time").press("Enter")
    _settled(page, state="error")
    expect(page.locator("#message")).to_contain_text("InvalidTimestampError")
    _screenshot(page, world, "bad-time")

    # Raw requests: http.client sends the path as written (a browser or httpx would remove the dot segments).
    host, port = world.base_url.removeprefix("http://").split(":")
    for path in ("/static/../http_api.py", "/static/%2e%2e/http_api.py", "/static/..%2Fweb_routes.py", "/static/..%2f..%2fpyproject.toml",
                 "/../state/http_api.py", "/static/web_routes.py", "/static/index.html", "/static/app.js/../../http_api.py", "/static/"):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 404, (path, response.status, body[:200])
        assert response.getheader("content-type") == "application/json", path
        assert body.startswith(b'{"error":"NotFound","detail":') and b"\n" not in body, (path, body[:200])
