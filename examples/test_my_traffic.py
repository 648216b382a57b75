"""Pin what your real-time traffic costs on the wire.

``flows/feed.rtcap`` was recorded with ``rtinspect proxy http://127.0.0.1:8000
-w flows/feed.rtcap`` while clients read the same feed of 12 messages over a
WebSocket, Server-Sent Events, an NDJSON stream, long polls and short polls.
With rtinspect installed, ``pytest examples/`` runs these tests: the
``rtinspect_report`` fixture comes with it.
"""

from inspector.pytest_plugin import assert_transport

#: The long polls of this feed were answered quickly (data was flowing), so say what they are.
RULES = ["/longpoll=long_poll"]


def test_every_transport_delivered_the_feed(rtinspect_report):
    report = rtinspect_report("flows/feed.rtcap", rules=RULES)

    assert_transport(report, "websocket", messages_server_to_client=12, anomalies=0)
    assert_transport(report, "http_stream", messages_server_to_client=12, anomalies=0)
    assert_transport(report, "long_poll", messages_server_to_client=12, empty_polls=2)
    assert_transport(report, "short_poll", messages_server_to_client=12)
    # The SSE stream also carried the event that says the feed ended.
    assert report.transport("sse").messages.server_to_client == 13


def test_what_a_message_costs(rtinspect_report):
    report = rtinspect_report("flows/feed.rtcap", rules=RULES)

    websocket = assert_transport(report, "websocket", max_overhead_ratio=0.3, max_wire_bytes_per_message=200)
    assert_transport(report, "sse", max_wire_bytes_per_message=1.25 * websocket.wire_bytes_per_message)
    # Every short poll pays for its request and response heads.
    assert_transport(report, "short_poll", min_overhead_ratio=0.75, min_head_bytes=5_000)


def test_exact_wire_bytes(rtinspect_report):
    report = rtinspect_report("flows/feed.rtcap", rules=RULES)

    assert_transport(
        report,
        "websocket",
        handshakes=1,
        handshake_bytes=report.transport("websocket").categories["head"].total,
        wire_bytes_client_to_server=275,
        wire_bytes_server_to_client=1717,
    )
