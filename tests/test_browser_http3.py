"""Chromium over HTTP/3: the demo page, an EventSource, a WebSocket over HTTP/3 (RFC 9220) and
WebTransport sessions, first straight at the demo's HTTP/3 server, then through ``rtinspect proxy``.

Chromium speaks QUIC to an origin without Alt-Svc when told to
(``--origin-to-force-quic-on``), accepts the certificate by its key
(``--ignore-certificate-errors-spki-list``: the demo's own, or mitmproxy's CA through the proxy),
and WebSocket over HTTP/3 only with ``--enable-features=EnableWebsocketsOverHttp3``
(:func:`inspector.demo.chromium.http3_flags`). What protocol each request used is
read from the DevTools protocol's own events, not from the page.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from servers import DEADLINE, run_rtinspect, running_proxy
from tshark import DUMPCAP, TSHARK, PacketCapture, quic_connection_bytes

from demo_server.app import create_app
from demo_server.run import serve_tls_in_thread
from demo_server.tls import make_tls_files
from inspector.demo.chromium import Chromium, find_chromium, http3_flags

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (chromium, chromium-browser or google-chrome on PATH)"
)

COUNT = 10
RATE = 50.0
NETWORK_EVENTS = ("Network.responseReceived", "Network.webSocketCreated", "Network.webTransportCreated")


async def read_in_chromium(
    origin: str, ca_cert: Path, transports: str, profile: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The demo page at ``https://ORIGIN`` over HTTP/3, reading ``transports``: its final state
    and the DevTools network events of the run."""
    assert CHROMIUM is not None
    browser = await Chromium.launch(CHROMIUM, profile, http3_flags(origin, ca_cert))
    try:
        events = browser.devtools.watch(*NETWORK_EVENTS)
        await browser.call("Network.enable")
        await browser.open(f"https://{origin}/?autostart=1&poll=100&transports={transports}")
        deadline = time.monotonic() + DEADLINE
        while True:
            text = await browser.evaluate("window.rtinspectDemo ? JSON.stringify(window.rtinspectDemo) : null")
            state = json.loads(text) if text else {}
            if state.get("done"):
                return state, events
            assert time.monotonic() < deadline, f"the page did not finish: {state.get('transports')}"
            await asyncio.sleep(0.1)
    finally:
        await browser.close()


def protocols_by_path(events: list[dict[str, Any]]) -> dict[str, str]:
    """Each response's protocol as Chromium reported it, by path."""
    found = {}
    for event in events:
        if event["method"] == "Network.responseReceived":
            response = event["params"]["response"]
            found[response["url"].split("/", 3)[3].split("?")[0]] = response["protocol"]
    return found


def opened(events: list[dict[str, Any]], method: str) -> list[str]:
    return [event["params"]["url"].split("/", 3)[3] for event in events if event["method"] == method]


def assert_every_transport_finished(state: dict[str, Any], keys: list[str]) -> None:
    assert state["protocol"] == "h3"
    for key in keys:
        figures = state["transports"][key]
        assert (key, figures["state"], figures["received"], figures["lost"], figures["duplicates"]) == (
            key,
            "done",
            COUNT,
            0,
            0,
        )


def test_chromium_reads_every_transport_over_http3_from_the_demo_server(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    app = create_app(rate=RATE, count=COUNT, size=256, autostart=False)
    keys = ["ws", "sse", "stream", "longpoll", "poll", "wt", "wtdgram"]
    with serve_tls_in_thread(app, tls, http3=True) as server:
        origin = server.url.removeprefix("https://")
        state, events = asyncio.run(read_in_chromium(origin, tls.cert_chain, ",".join(keys), tmp_path / "profile"))
    assert_every_transport_finished(state, keys)
    protocols = protocols_by_path(events)
    assert {protocols[path] for path in ("", "sse", "stream", "poll", "longpoll", "feed/start")} == {"h3"}
    assert opened(events, "Network.webSocketCreated") == ["ws"]
    assert sorted(opened(events, "Network.webTransportCreated")) == ["wt", "wt-datagram"]


#: ``rtinspect report``'s rules for the demo's paths, as the demo pins them (WebTransport is known by its CONNECT).
RULES = ("/ws=websocket", "/sse=sse", "/feed/*=http", "/=http")


def test_chromium_over_http3_through_the_proxy_is_reported_as_h3(
    tmp_path: Path, confdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page, an EventSource, a WebSocket over HTTP/3 and a WebTransport session through the proxy's
    QUIC relay: Chromium says h3, and the proxy's report counts each transport over h3, and each
    QUIC connection's bytes as tshark reassembles the client's leg (where tshark and dumpcap are)."""
    tls = make_tls_files(tmp_path)
    capture, keylog, pcap = tmp_path / "h3.rtcap", tmp_path / "keys.log", tmp_path / "client-leg.pcapng"
    monkeypatch.setenv("MITMPROXY_SSLKEYLOGFILE", str(keylog))
    app = create_app(rate=RATE, count=COUNT, size=256, autostart=False)
    keys = ["ws", "sse", "wt"]
    options = ("--listen-tls", "--set", f"ssl_verify_upstream_trusted_ca={tls.ca_cert}")
    with (
        serve_tls_in_thread(app, tls, http3=True) as server,
        running_proxy(server.url, *options, confdir=confdir, capture=capture) as proxy,
    ):
        packets = PacketCapture(pcap, f"udp port {proxy.port}") if TSHARK and DUMPCAP else None
        if packets:
            packets.start()
        origin = f"127.0.0.1:{proxy.port}"
        ca = confdir / "mitmproxy-ca-cert.pem"
        try:
            state, events = asyncio.run(read_in_chromium(origin, ca, ",".join(keys), tmp_path / "profile"))
        finally:
            # The proxy leaves without finalizing Python, where a thread of mitmproxy's UDP server
            # could take the GIL and fault the process (it did, with Chromium over h3).
            assert proxy.stop() == 0, proxy.stderr
            if packets:
                packets.stop()

    assert_every_transport_finished(state, keys)
    protocols = protocols_by_path(events)
    assert protocols[""] == protocols["sse"] == "h3"
    assert opened(events, "Network.webSocketCreated") == ["ws"]
    assert opened(events, "Network.webTransportCreated") == ["wt"]

    rules = [arg for rule in RULES for arg in ("--transport", rule)]
    done = run_rtinspect("report", str(capture), *rules, "-f", "json")
    assert done.returncode == 0, done.stderr
    transports = json.loads(done.stdout)["transports"]
    # SSE's end event and WebTransport's end of the feed (a stream of its own) are messages too.
    for name, messages in (("sse", COUNT + 1), ("websocket", COUNT), ("webtransport", COUNT + 1)):
        over_h3 = transports[name]["by_protocol"]["h3"]
        assert over_h3["messages"]["server_to_client"] == messages, (name, over_h3["messages"])

    if packets:
        done = run_rtinspect("report", str(capture), *rules, "-f", "json", "--connections")
        listed = json.loads(done.stdout)["connections"]
        tshark = quic_connection_bytes(pcap, keylog, proxy.port)
        quic = {int(c["client"].rpartition(":")[2]): c["wire_bytes"] for c in listed if c["protocol"] == "h3"}
        assert len(quic) >= 2  # the page's connection, and the WebTransport session's own
        assert quic == {port: {direction.value: sent[direction] for direction in sent} for port, sent in tshark.items()}
