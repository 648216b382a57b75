"""``rtinspect proxy --metrics-port``: Prometheus metrics that agree with the clients and the report.

Real proxy, real clients, real server on 127.0.0.1; ``/metrics`` is scraped
while a connection is open and after every connection has closed. Messages and
payload are compared with what the clients sent and received, wire bytes with
what a relay between the clients and the proxy recorded, and every counter
with the report of the capture the same proxy wrote. The ledger of a
recording is compared with its clients and with tshark's reading of its packets.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import (
    DEADLINE,
    LOOPBACK,
    AppServer,
    CheckoutProxyProcess,
    RecordingRelay,
    free_port,
    run_rtinspect,
    running_proxy,
    wait_until,
)
from tshark import dissect_pcapng, needs_tshark
from websockets.sync.client import connect as websocket_connect

from inspector.classify import Classifier, TransportRule
from inspector.metrics import MetricsLedger
from inspector.replay import analyze_captures, report_from_captures
from inspector.report import HTTP1, HTTP2, PROTOCOLS, TRANSPORTS, PerDirection, Report
from inspector.wire import Direction

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: Counters by transport and direction, and the report figure each one equals.
BY_DIRECTION = {
    "rtinspect_messages_total": lambda s, d: s.messages[d],
    "rtinspect_wire_bytes_total": lambda s, d: s.wire_bytes[d],
    "rtinspect_payload_bytes_total": lambda s, d: s.payload_bytes[d],
    "rtinspect_overhead_bytes_total": lambda s, d: s.wire_bytes[d] - s.categories["payload"][d],
}
#: Counters by transport, and the report figure each one equals.
BY_TRANSPORT = {
    "rtinspect_connections_total": lambda s: s.connections,
    "rtinspect_handshakes_total": lambda s: s.handshakes,
    "rtinspect_tls_handshakes_total": lambda s: s.tls_handshakes,
    "rtinspect_anomalies_total": lambda s: s.anomalies,
    "rtinspect_empty_polls_total": lambda s: s.empty_polls,
    "rtinspect_handshake_duration_seconds_count": lambda s: s.handshake_duration.count if s.handshake_duration else 0,
}


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def parse_by_protocol(text: str) -> Samples:
    """Every sample as exported, its protocol label included."""
    return {key(s.name, **s.labels): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def parse(text: str) -> Samples:
    """The samples summed over the protocol label (PromQL's ``sum without (protocol)``)."""
    samples: Samples = {}
    for (name, labels), value in parse_by_protocol(text).items():
        whatever_protocol = key(name, **{label: v for label, v in labels if label != "protocol"})
        samples[whatever_protocol] = samples.get(whatever_protocol, 0.0) + value
    return samples


def scrape(port: int) -> Samples:
    response = httpx.get(f"http://{LOOPBACK}:{port}/metrics", timeout=DEADLINE)
    response.raise_for_status()
    return parse(response.text)


def total(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def counters(samples: Samples) -> Samples:
    """The rtinspect samples that must never go down (every one but the open-connection gauges)."""
    return {k: v for k, v in samples.items() if k[0].startswith("rtinspect_") and "_open_" not in k[0]}


def expected_counters(report: Report) -> Samples:
    """What every rtinspect counter must read when it has counted exactly this report."""
    expected: Samples = {}
    for transport in TRANSPORTS:
        summary = report.transports.get(transport)
        for name, figure in BY_TRANSPORT.items():
            expected[key(name, transport=transport)] = figure(summary) if summary else 0
        for name, by_direction in BY_DIRECTION.items():
            for d in Direction:
                expected[key(name, transport=transport, direction=d.value)] = by_direction(summary, d) if summary else 0
    for d in Direction:
        expected[key("rtinspect_relayed_bytes_total", direction=d.value)] = sum(
            s.wire_bytes[d] for s in report.transports.values()
        )
    return expected


def assert_counts_report(samples: Samples, report: Report) -> None:
    expected = expected_counters(report)
    assert {k: samples.get(k) for k in expected} == expected
    for name, summary in report.transports.items():
        durations = summary.handshake_duration
        count = durations.count if durations else 0
        assert samples[key("rtinspect_handshake_duration_seconds_bucket", transport=name, le="+Inf")] == count
        measured = samples[key("rtinspect_handshake_duration_seconds_sum", transport=name)]
        assert math.isclose(measured, durations.mean * count if durations else 0.0, rel_tol=1e-9, abs_tol=1e-9)


RECORDINGS = Path(__file__).parent / "recordings"


@functools.cache
def mixed_recording() -> tuple[dict[str, Any], tuple[TransportRule, ...], Samples]:
    """What the mixed recording's clients saw, its transport rules, and the samples of a
    ledger that counted it."""
    seen = json.loads((RECORDINGS / "mixed.expected.json").read_text())
    rules = tuple(TransportRule.parse(rule) for rule in seen["rules"])
    analysis = analyze_captures([RECORDINGS / "mixed.rtcap"], classifier=Classifier(rules))
    ledger = MetricsLedger()
    ledger.update(analysis.records, ())
    return seen, rules, parse(_exposition(ledger))


#: Counters by transport and direction that the clients of a recording saw, and where they noted them.
CLIENT_FIGURES = {"rtinspect_messages_total": "messages", "rtinspect_payload_bytes_total": "payload_bytes"}


def test_the_ledger_of_a_recording_counts_what_its_clients_saw_and_its_report() -> None:
    seen, rules, samples = mixed_recording()
    for transport in TRANSPORTS:
        clients = seen["transports"].get(transport, {})
        assert samples[key("rtinspect_connections_total", transport=transport)] == clients.get("connections", 0)
        for d in Direction:
            for name, figure in CLIENT_FIGURES.items():
                expected = clients[figure][d.value] if clients else 0
                assert samples[key(name, transport=transport, direction=d.value)] == expected, (name, transport, d)
    for transport in ("long_poll", "short_poll"):
        empty_polls = seen["transports"][transport]["empty_polls"]
        assert samples[key("rtinspect_empty_polls_total", transport=transport)] == empty_polls, transport
    # Every counter, the figures no client could see included, is the report's.
    assert_counts_report(samples, report_from_captures([RECORDINGS / "mixed.rtcap"], rules=rules))
    assert total(samples, "rtinspect_open_connections") == 0


@needs_tshark
def test_the_ledger_of_a_recording_relays_the_bytes_tshark_finds() -> None:
    """The pcapng holds the proxy-to-server leg, which carried the bytes of the client leg."""
    seen, _, samples = mixed_recording()
    streams = dissect_pcapng(RECORDINGS / "mixed.pcapng", seen["server_port"], decode_as=False).values()
    for d in Direction:
        relayed = samples[key("rtinspect_relayed_bytes_total", direction=d.value)]
        wire = sum(samples[key("rtinspect_wire_bytes_total", transport=t, direction=d.value)] for t in TRANSPORTS)
        assert relayed == wire == sum(s.tcp_len[d] for s in streams), d


def test_each_series_has_the_protocol_its_connections_spoke() -> None:
    """HTTP/1.1 and h2 recordings of the same SSE traffic, counted together: each protocol's
    series are the report's figures for that protocol's connections, and both are exported."""
    captures = [RECORDINGS / "sse.rtcap", RECORDINGS / "http2" / "h2_sse.rtcap"]
    ledger = MetricsLedger()
    ledger.update(analyze_captures(captures).records, ())
    text = _exposition(ledger)
    samples = parse_by_protocol(text)
    sse = report_from_captures(captures).transport("sse")
    assert set(sse.by_protocol) == {HTTP1, HTTP2}
    for protocol, summary in sse.by_protocol.items():
        labels = {"transport": "sse", "protocol": protocol}
        assert samples[key("rtinspect_connections_total", **labels)] == summary.connections > 0
        assert samples[key("rtinspect_handshakes_total", **labels)] == summary.handshakes > 0
        count = summary.handshake_duration.count if summary.handshake_duration else 0
        assert samples[key("rtinspect_handshake_duration_seconds_count", **labels)] == count
        for d in Direction:
            for name, figure in BY_DIRECTION.items():
                assert samples[key(name, **labels, direction=d.value)] == figure(summary, d), (name, protocol, d)
            assert samples[key("rtinspect_wire_bytes_total", **labels, direction=d.value)] > 0
    assert 'rtinspect_wire_bytes_total{direction="server_to_client",protocol="h2",transport="sse"}' in text
    # Every transport with every protocol is exported, at zero where nothing used it.
    for transport in TRANSPORTS:
        for protocol in PROTOCOLS:
            assert key("rtinspect_open_connections", transport=transport, protocol=protocol) in samples
            assert key("rtinspect_connections_total", transport=transport, protocol=protocol) in samples


def _exposition(ledger: MetricsLedger) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    class Families:
        def collect(self):  # type: ignore[no-untyped-def]
            return ledger.families()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    return generate_latest(registry).decode()


@pytest.mark.parametrize("analysis", ["inline", "process"])
def test_counters_during_and_after_a_run_match_the_clients_and_the_report_of_its_capture(
    app_server: AppServer, confdir: Path, tmp_path: Path, analysis: str
) -> None:
    """The clients talk through a relay that records every byte between them and the
    proxy: the counters are what the clients sent and received, on the wire bytes the
    relay saw; and the figures no client sees are those of the report of the capture."""
    capture = tmp_path / "metered.rtcap"
    metrics_port = free_port()
    #: What the clients exchanged, by transport: messages and payload bytes, each way.
    messages: dict[str, PerDirection] = {}
    payload: dict[str, PerDirection] = {}
    with (
        running_proxy(
            app_server.url,
            "--metrics-port",
            str(metrics_port),
            "--analysis",
            analysis,
            confdir=confdir,
            capture=capture,
        ) as proxy,
        RecordingRelay(proxy.port) as relay,
    ):
        before = scrape(metrics_port)
        assert total(counters(before), "rtinspect_connections_total") == 0

        with websocket_connect(relay.url("ws") + "/ws", open_timeout=DEADLINE) as ws:
            sent = [f"message {i}" for i in range(3)]
            for message in sent:
                ws.send(message)
                assert ws.recv(DEADLINE) == message
            during = scrape(metrics_port)
            (websocket,) = relay.connections  # what went by so far, in the relay
            so_far = PerDirection(len(websocket.client_to_server), len(websocket.server_to_client))
        messages["websocket"] = PerDirection(len(sent), len(sent))
        payload["websocket"] = PerDirection(sum(map(len, sent)), sum(map(len, sent)))
        assert during[key("rtinspect_open_connections", transport="websocket")] == 1
        assert during[key("rtinspect_open_messages", transport="websocket", direction="client_to_server")] == 3
        assert during[key("rtinspect_open_messages", transport="websocket", direction="server_to_client")] == 3
        assert total(during, "rtinspect_connections_total") == 0
        for d in Direction:
            assert during[key("rtinspect_open_wire_bytes", transport="websocket", direction=d.value)] == so_far[d], d
            assert during[key("rtinspect_relayed_bytes_total", direction=d.value)] == so_far[d], d

        with httpx.Client(base_url=relay.url(), timeout=DEADLINE) as client:  # one connection, three polls
            answers = [client.get("/poll", params={"count": 1}) for _ in range(3)]
        assert all(answer.status_code == 200 for answer in answers)
        messages["short_poll"] = PerDirection(0, len(answers))
        payload["short_poll"] = PerDirection(0, sum(len(answer.content) for answer in answers))
        with httpx.Client(base_url=relay.url(), timeout=DEADLINE) as client:
            events = [line for line in client.get("/sse?count=5").text.splitlines() if line.startswith("data: ")]
        messages["sse"] = PerDirection(0, len(events))
        payload["sse"] = PerDirection(0, sum(len(line.removeprefix("data: ").encode()) for line in events))
        with httpx.Client(base_url=relay.url(), timeout=DEADLINE) as client:
            lines = [line for line in client.get("/ndjson?count=4").content.split(b"\n") if line]
        messages["http_stream"] = PerDirection(0, len(lines))
        payload["http_stream"] = PerDirection(0, sum(map(len, lines)))
        with httpx.Client(base_url=relay.url(), timeout=DEADLINE) as client:
            plain = client.get("/plain").content
        messages["http"] = PerDirection(0, 1)
        payload["http"] = PerDirection(0, len(plain))
        assert (len(events), len(lines)) == (5, 4)

        relayed = relay.wait_finished(5)
        wait_until(
            lambda: total(scrape(metrics_port), "rtinspect_connections_total") == 5,
            "the metrics to count five closed connections",
        )
        after = scrape(metrics_port)
        assert proxy.stop() == 0, proxy.stderr

    # Each relayed connection by its first request line: its transport's wire bytes.
    first_requests = {
        "/ws": "websocket", "/poll": "short_poll", "/sse": "sse", "/ndjson": "http_stream", "/plain": "http"
    }  # fmt: skip
    wire: dict[str, PerDirection] = {}
    for connection in relayed:
        path = bytes(connection.client_to_server).split(b" ", 2)[1].decode().split("?")[0]
        wire[first_requests[path]] = PerDirection(len(connection.client_to_server), len(connection.server_to_client))
    assert set(wire) == set(first_requests.values())
    for transport in TRANSPORTS:
        assert after[key("rtinspect_connections_total", transport=transport)] == (transport in wire), transport
        for d in Direction:
            labels = {"transport": transport, "direction": d.value}
            assert after[key("rtinspect_messages_total", **labels)] == messages.get(transport, PerDirection())[d]
            assert after[key("rtinspect_payload_bytes_total", **labels)] == payload.get(transport, PerDirection())[d]
            assert after[key("rtinspect_wire_bytes_total", **labels)] == wire.get(transport, PerDirection())[d]
    for d in Direction:
        assert after[key("rtinspect_relayed_bytes_total", direction=d.value)] == sum(w[d] for w in wire.values())

    report = report_from_captures([capture])
    assert {name: s.connections for name, s in report.transports.items()} == dict.fromkeys(wire, 1)
    assert_counts_report(after, report)
    assert total(after, "rtinspect_open_connections") == 0
    for sample, value in counters(during).items():
        assert after[sample] >= value, sample


@pytest.mark.parametrize("analysis", ["inline", "process"])
def test_counters_never_go_down_when_a_transport_changes(
    app_server: AppServer, confdir: Path, tmp_path: Path, analysis: str
) -> None:
    """The first request to a path is plain ``http`` until the path is asked for again."""
    capture = tmp_path / "polls.rtcap"
    metrics_port = free_port()
    with running_proxy(
        app_server.url, "--metrics-port", str(metrics_port), "--analysis", analysis, confdir=confdir, capture=capture
    ) as proxy:
        scrapes = []
        for polls in (1, 2):
            assert httpx.get(f"{proxy.url}/poll", timeout=DEADLINE).status_code == 200  # a connection each
            wait_until(
                lambda polls=polls: total(scrape(metrics_port), "rtinspect_connections_total") == polls,
                f"the metrics to count {polls} closed connection(s)",
            )
            scrapes.append(scrape(metrics_port))
        assert proxy.stop() == 0, proxy.stderr

    first, second = (counters(s) for s in scrapes)
    assert first[key("rtinspect_connections_total", transport="http")] == 1
    assert second[key("rtinspect_connections_total", transport="http")] == 1
    assert second[key("rtinspect_connections_total", transport="short_poll")] == 1
    for sample, value in first.items():
        assert second[sample] >= value, sample
    # The report, with both connections in view, calls both short polls.
    assert report_from_captures([capture]).transport("short_poll").connections == 2


def test_a_metrics_port_in_use_is_one_line_and_a_failure(confdir: Path) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_rtinspect(
            "proxy", "http://127.0.0.1:9", "-p", str(free_port()), "--metrics-port", str(port),
            "--set", f"confdir={confdir}",
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("arguments", [["--metrics-host", "127.0.0.1"], ["--metrics-port", "0"]])
def test_metrics_option_mistakes_are_one_line(arguments: list[str]) -> None:
    result = run_rtinspect("proxy", "http://127.0.0.1:9", *arguments)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error:")


def test_metrics_reachable_from_the_network_are_warned_about(confdir: Path) -> None:
    metrics_port = free_port()
    arguments = ("--metrics-port", str(metrics_port), "--metrics-host", "0.0.0.0")
    with running_proxy("http://127.0.0.1:9", *arguments, confdir=confdir) as proxy:
        assert key("rtinspect_relayed_bytes_total", direction="client_to_server") in scrape(metrics_port)
        assert proxy.stop() == 0, proxy.stderr
    assert f"serving metrics on 0.0.0.0:{metrics_port}: the metrics are reachable from the network" in proxy.stderr


# -- the addon in a user's own mitmdump: --set rtinspect_metrics_port=PORT


def addon_path() -> str:
    """What ``rtinspect addon-path`` prints, as a user would ask for it."""
    result = run_rtinspect("addon-path")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def answers(port: int) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"http://{LOOPBACK}:{port}/metrics", timeout=DEADLINE).status_code == 200
    return False


def mitmdump_command(upstream: str, port: int, confdir: Path, *options: str) -> list[str]:
    mitmdump = str(Path(sys.executable).with_name("mitmdump"))
    command = [mitmdump, "-q", "-s", addon_path(), "--mode", f"reverse:{upstream}", "--listen-host", LOOPBACK]
    command += ["-p", str(port), "--set", f"confdir={confdir}"]
    for option in options:
        command += ["--set", option]
    return command


@contextlib.contextmanager
def mitmdump_with_addon(upstream: str, confdir: Path, *options: str) -> Iterator[CheckoutProxyProcess]:
    """``mitmdump -s "$(rtinspect addon-path)" --set OPTION...`` on a free port, listening when this yields."""
    port = free_port()
    proxy = CheckoutProxyProcess(mitmdump_command(upstream, port, confdir, *options), port, None)
    try:
        proxy.wait_listening()
        yield proxy
    finally:
        if proxy.process.poll() is None:
            proxy.stop()


def test_the_addon_in_mitmdump_serves_metrics_that_match_its_capture(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    capture = tmp_path / "mitmdump.rtcap"
    metrics_port = free_port()
    options = (f"rtinspect_metrics_port={metrics_port}", f"rtinspect_write={capture}")
    with mitmdump_with_addon(app_server.url, confdir, *options) as proxy:
        # mitmdump may listen before it has loaded its scripts (it loads them on its event loop).
        wait_until(lambda: answers(metrics_port), "mitmdump to serve metrics")
        before = scrape(metrics_port)
        assert total(counters(before), "rtinspect_connections_total") == 0

        with websocket_connect(f"ws://{LOOPBACK}:{proxy.port}/ws", open_timeout=DEADLINE) as ws:
            for i in range(3):
                ws.send(f"message {i}")
                assert ws.recv(DEADLINE) == f"message {i}"
            during = scrape(metrics_port)
        assert during[key("rtinspect_open_connections", transport="websocket")] == 1
        assert during[key("rtinspect_open_messages", transport="websocket", direction="client_to_server")] == 3
        assert total(during, "rtinspect_connections_total") == 0

        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:  # one connection, three polls
            for _ in range(3):
                assert client.get("/poll", params={"count": 1}).status_code == 200
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
            assert client.get("/sse?count=5").status_code == 200

        wait_until(
            lambda: total(scrape(metrics_port), "rtinspect_connections_total") == 3,
            "mitmdump's metrics to count three closed connections",
        )
        after = scrape(metrics_port)
        assert ("process_cpu_seconds_total", ()) in after  # the process's own metrics, as the proxy serves them
        assert proxy.stop() == 0, proxy.stderr

    report = report_from_captures([capture])
    assert {name: s.connections for name, s in report.transports.items()} == {"websocket": 1, "short_poll": 1, "sse": 1}
    assert_counts_report(after, report)
    assert total(after, "rtinspect_open_connections") == 0
    for sample, value in counters(during).items():
        assert after[sample] >= value, sample


def test_mitmdump_without_the_option_serves_no_metrics(app_server: AppServer, confdir: Path, tmp_path: Path) -> None:
    metrics_port = free_port()
    with mitmdump_with_addon(app_server.url, confdir, f"rtinspect_write={tmp_path / 'plain.rtcap'}") as proxy:
        wait_until(lambda: (tmp_path / "plain.rtcap").exists(), "mitmdump to load the script")
        assert httpx.get(f"{proxy.url}/plain", timeout=DEADLINE).status_code == 200
        assert not answers(metrics_port)
        assert proxy.stop() == 0, proxy.stderr


@pytest.mark.parametrize("problem", ["in use", "out of range"])
def test_mitmdump_stops_with_one_reason_when_it_cannot_serve_metrics(confdir: Path, problem: str) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen(1)
        port = busy.getsockname()[1] if problem == "in use" else 70000
        proxy = CheckoutProxyProcess(
            mitmdump_command("http://127.0.0.1:9", free_port(), confdir, f"rtinspect_metrics_port={port}"), 0, None
        )
        status = proxy.process.wait(DEADLINE)
    reason = {
        "in use": f"cannot serve metrics on 127.0.0.1:{port}: Address already in use",
        "out of range": "rtinspect_metrics_port must be a port number (1-65535), not 70000",
    }[problem]
    assert status == 1
    assert reason in proxy.output
