"""The Grafana dashboard in ``dashboards/rtinspect.json`` asks only for what the proxy exports.

Where Prometheus is installed, a real Prometheus also scrapes a real proxy
while real clients talk through it, and answers every query of the dashboard
with data (no parse or vector-matching errors, no empty answers).

A real proxy relays real traffic (WebSocket, polls, SSE) and its ``/metrics``
is scraped; every PromQL expression of the dashboard (panels and template
variables, with Grafana's variables filled in as Grafana would) is parsed by
promql-parser (a port of Prometheus's own parser), and each metric it
selects must be one the proxy exported, each label it matches, groups by,
joins on or prints in a legend one that metric carries (or that Prometheus
adds to every target: ``job`` and ``instance``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import DEADLINE, LOOPBACK, AppServer, free_port, running_proxy, wait_until
from websockets.sync.client import connect as websocket_connect

from inspector.report import PROTOCOLS

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "rtinspect.json"
PROMETHEUS = shutil.which("prometheus")
#: Labels Prometheus puts on every series it scrapes (the target's).
TARGET_LABELS = {"job", "instance"}
#: Grafana's own variables, with a value of the kind Grafana gives them.
GRAFANA_DURATIONS = {"__rate_interval": "1m", "__interval": "15s", "__range": "6h"}


@functools.cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(holder: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in holder.get("panels", []):
        yield panel
        yield from panels(panel)


def targets() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of every panel."""
    return [(panel["title"], target) for panel in panels(dashboard()) for target in panel.get("targets", [])]


def variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard()["templating"]["list"]}


def as_grafana_sends_it(expr: str) -> str:
    """The expression with Grafana's variables replaced: built-in durations by a duration, the
    dashboard's own variables (used in regex matchers) by the regex "All" stands for."""
    for name in re.findall(r"\$\{?(\w+)\}?", expr):
        assert name in GRAFANA_DURATIONS or name in variables(), f"{expr!r} uses ${name}, which nothing defines"

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return GRAFANA_DURATIONS.get(name) or variables()[name].get("allValue") or ".*"

    return re.sub(r"\$\{?(\w+)\}?", value, expr)


@dataclass
class Asked:
    """What one expression asks of the metrics: each metric with the labels it relies on."""

    labels: dict[str, set[str]] = field(default_factory=dict)

    def need(self, metric: str, *labels: str) -> None:
        self.labels.setdefault(metric, set()).update(labels)

    def need_everywhere(self, labels: set[str], metrics: set[str]) -> None:
        for metric in metrics:
            self.need(metric, *labels)


def walk(node: Any, asked: Asked) -> tuple[set[str], set[str] | None]:
    """Record what ``node`` asks; return the metrics under it and the labels its result has
    (None: whatever its metrics carry)."""
    if isinstance(node, promql_parser.VectorSelector):
        assert node.name, f"a selector without a metric name: {node}"
        asked.need(node.name, *(matcher.name for matcher in node.matchers.matchers))
        return {node.name}, None
    if isinstance(node, promql_parser.MatrixSelector):
        return walk(node.vector_selector, asked)
    if isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
        return walk(node.expr, asked)
    if isinstance(node, promql_parser.AggregateExpr):
        metrics, _ = walk(node.expr, asked)
        labels = set(node.modifier.labels) if node.modifier is not None else set()
        asked.need_everywhere(labels, metrics)
        by = node.modifier is not None and node.modifier.type == promql_parser.AggModifierType.By
        return metrics, labels if by or node.modifier is None else None
    if isinstance(node, promql_parser.Call):
        metrics, result = set(), None
        for argument in node.args:
            found, labels = walk(argument, asked)
            if found:
                metrics, result = metrics | found, labels
        if node.func.name == "histogram_quantile":
            asked.need_everywhere({"le"}, metrics)
            result = None if result is None else result - {"le"}
        return metrics, result
    if isinstance(node, promql_parser.BinaryExpr):
        left, left_labels = walk(node.lhs, asked)
        right, right_labels = walk(node.rhs, asked)
        modifier = node.modifier
        if modifier is not None and modifier.matching is not None:
            joined = set(modifier.matching.labels)
            asked.need_everywhere(joined, left | right)
        if modifier is not None and modifier.card == promql_parser.VectorMatchCardinality.OneToMany:
            return left | right, right_labels
        return left | right, left_labels if left else right_labels
    assert isinstance(node, (promql_parser.NumberLiteral, promql_parser.StringLiteral)), type(node)
    return set(), set()


def label_values_query(query: str) -> tuple[str, str]:
    """The selector and label of a Grafana ``label_values(SELECTOR, LABEL)`` variable query."""
    match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query)
    assert match, f"not a label_values() query: {query!r}"
    return match.group(1), match.group(2)


def dashboard_asks() -> dict[str, Asked]:
    """What every query of the dashboard asks, by where it is."""
    asks: dict[str, Asked] = {}
    for title, target in targets():
        asked = Asked()
        metrics, result = walk(promql_parser.parse(as_grafana_sends_it(target["expr"])), asked)
        printed = set(re.findall(r"{{\s*(\w+)\s*}}", target.get("legendFormat", "")))
        if result is not None:
            assert printed <= result, f"{title}: the legend prints {printed - result}, which the result has not"
        asked.need_everywhere(printed, metrics)
        asks[f"{title} ({target['refId']})"] = asked
    for name, variable in variables().items():
        if variable["type"] != "query":
            continue
        selector, label = label_values_query(variable["query"]["query"])
        asked = Asked()
        metrics, _ = walk(promql_parser.parse(as_grafana_sends_it(selector)), asked)
        asked.need_everywhere({label}, metrics)
        asks[f"variable {name}"] = asked
    return asks


@pytest.fixture(scope="module")
def exported(app_server: AppServer, confdir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Each sample name a real proxy exports after real traffic, with its labels."""
    metrics_port = free_port()
    capture = tmp_path_factory.mktemp("dashboard") / "traffic.rtcap"
    with running_proxy(app_server.url, "--metrics-port", str(metrics_port), confdir=confdir, capture=capture) as proxy:
        with websocket_connect(f"ws://{LOOPBACK}:{proxy.port}/ws", open_timeout=DEADLINE) as ws:
            ws.send("hello")
            assert ws.recv(DEADLINE) == "hello"
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
            for _ in range(2):
                assert client.get("/poll", params={"count": 1}).status_code == 200
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
            assert client.get("/sse?count=3").status_code == 200

        def scrape() -> str:
            return httpx.get(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=DEADLINE).text

        wait_until(
            lambda: 'rtinspect_connections_total{protocol="http/1.1",transport="sse"} 1.0' in scrape(),
            "three closed connections",
        )
        text = scrape()
        assert proxy.stop() == 0, proxy.stderr
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


def test_every_metric_and_label_the_dashboard_queries_is_exported(exported: dict[str, set[str]]) -> None:
    asks = dashboard_asks()
    assert asks, "the dashboard has no queries"
    problems = []
    for where, asked in asks.items():
        for metric, labels in asked.labels.items():
            if metric not in exported:
                problems.append(f"{where}: {metric} is not exported")
                continue
            missing = labels - exported[metric] - TARGET_LABELS
            if missing:
                problems.append(f"{where}: {metric} has no label {', '.join(sorted(missing))}")
    assert not problems, "\n".join(problems)


def test_the_dashboard_shows_cost_per_message_overhead_connections_and_anomalies() -> None:
    queried = {title: target["expr"] for title, target in targets()}
    per_message = [
        expr
        for expr in queried.values()
        if re.search(
            r"sum by \(transport\) \(\w+\(rtinspect_wire_bytes_total\{[^}]*\}\[[^]]+\]\)\)\s*/\s*sum by \(transport\) \(\w+\(rtinspect_messages_total",
            expr,
        )
    ]
    assert per_message, "no panel divides wire bytes by messages per transport"
    assert any("rtinspect_overhead_bytes_total" in e and "rtinspect_wire_bytes_total" in e for e in queried.values())
    assert any("rtinspect_open_connections" in e for e in queried.values())
    assert any("rtinspect_connections_total" in e for e in queried.values())
    assert any("rtinspect_anomalies_total" in e for e in queried.values())
    # The HTTP version can be chosen wherever the transport can.
    assert "protocol" in variables()
    for title, expr in queried.items():
        assert ('transport=~"$transport"' in expr) == ('protocol=~"$protocol"' in expr), title


def test_the_dashboard_is_one_grafana_can_import() -> None:
    """The parts Grafana's importer relies on: a title, a uid, the schema version, panels with
    unique ids that fit the 24-column grid, and one data source variable every query uses."""
    board = dashboard()
    assert board["title"] and re.fullmatch(r"[\w-]{1,40}", board["uid"]) and board["schemaVersion"] >= 36
    assert "id" not in board or board["id"] is None  # an id would tie it to one Grafana's database
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    (source,) = [v for v in variables().values() if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": f"${{{source['name']}}}"}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what it shows"
    occupied: set[tuple[int, int]] = set()
    for panel in panels(board):
        grid = panel["gridPos"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells


def test_the_check_catches_a_metric_or_label_the_proxy_does_not_export() -> None:
    """The check itself: names and labels that are not exported are found."""
    asked = Asked()
    walk(
        promql_parser.parse(
            'sum by (path) (rate(rtinspect_bytes_total{transport="sse"}[1m])) / on (le) sum(rtinspect_open_connections)'
        ),
        asked,
    )
    assert asked.labels == {"rtinspect_bytes_total": {"path", "transport", "le"}, "rtinspect_open_connections": {"le"}}


# -- a real Prometheus answers every query


@contextlib.contextmanager
def prometheus_scraping(target: str, folder: Path) -> Iterator[str]:
    """Prometheus on a free loopback port, scraping ``target`` every second as job "rtinspect";
    yields its address once it is ready."""
    assert PROMETHEUS is not None
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: rtinspect, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    command = [
        PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}", "--log.level=warn",
    ]  # fmt: skip
    with open(folder / "prometheus.log", "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    address = f"http://{LOOPBACK}:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, (folder / "prometheus.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{address}/-/ready", timeout=DEADLINE).status_code == 200
            return False

        wait_until(ready, "Prometheus to be ready")
        yield address
    finally:
        process.terminate()
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(DEADLINE)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=DEADLINE)
    answer = response.json()
    assert answer["status"] == "success", f"{expr!r}: {answer.get('error')}"
    return answer["data"]["result"]


@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus on PATH (apt-get install prometheus)")
def test_prometheus_answers_every_dashboard_query_from_a_real_proxy(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    metrics_port = free_port()
    with (
        running_proxy(app_server.url, "--metrics-port", str(metrics_port), confdir=confdir) as proxy,
        prometheus_scraping(f"{LOOPBACK}:{metrics_port}", tmp_path) as prometheus,
    ):
        wait_until(lambda: bool(query(prometheus, 'up{job="rtinspect"} == 1')), "Prometheus to scrape the proxy")
        with websocket_connect(f"ws://{LOOPBACK}:{proxy.port}/ws", open_timeout=DEADLINE) as ws:
            for i in range(3):
                ws.send(f"message {i}")
                assert ws.recv(DEADLINE) == f"message {i}"
            wait_until(
                lambda: bool(query(prometheus, 'rtinspect_open_connections{transport="websocket"} == 1')),
                "Prometheus to see the open WebSocket",
            )
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
            for _ in range(3):
                assert client.get("/poll", params={"count": 1}).status_code == 200
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
            assert client.get("/sse?count=3").status_code == 200
        wait_until(
            lambda: bool(query(prometheus, 'rtinspect_connections_total{transport="sse"} == 1')),
            "Prometheus to count the closed connections",
        )
        time.sleep(2.5)  # a couple more scrapes, so that rate() has two samples after the traffic

        empty = []
        for title, target in targets():
            if not query(prometheus, as_grafana_sends_it(target["expr"])):
                empty.append(f"{title} ({target['refId']})")
        assert not empty, f"queries with no data: {empty}"
        per_message = next(t["expr"] for title, t in targets() if title == "Wire bytes per message")
        costs = {
            r["metric"]["transport"]: float(r["value"][1]) for r in query(prometheus, as_grafana_sends_it(per_message))
        }
        assert costs["websocket"] > 0 and costs["sse"] > 0 and costs["short_poll"] > 0

        for name, variable in variables().items():
            if variable["type"] != "query":
                continue
            selector, label = label_values_query(as_grafana_sends_it(variable["query"]["query"]))
            response = httpx.get(
                f"{prometheus}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=DEADLINE
            )
            values = response.json()["data"]
            expected = {"job": {"rtinspect"}, "instance": {f"{LOOPBACK}:{metrics_port}"}}.get(name)
            assert values and (expected is None or set(values) == expected), (name, values)
            if name == "transport":
                assert {"websocket", "sse", "short_poll", "long_poll", "http", "http_stream"} <= set(values)
            if name == "protocol":
                assert set(values) == set(PROTOCOLS)
        assert proxy.stop() == 0, proxy.stderr
