"""Application messages: what the application received, wherever a body shows it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from inspector.app_messages import BODY_LIMIT, AppMessageRule, JsonBody, json_items
from inspector.capture import ConnectionOpened
from inspector.classify import Classifier
from inspector.cli import main as rtinspect
from inspector.connection import ConnectionAnalyzer, ConnectionRecord
from inspector.render import render
from inspector.summary import build_report
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


@pytest.mark.parametrize(
    ("body", "members", "items"),
    [
        (b"[1, 2, 3]", None, 3),
        (b"[]", None, 0),
        (b'{"items": [{"a": 1}, {"a": 2}]}', None, 2),
        (b'{"items": [1], "next": 4}', None, 1),
        (b'{"seq": 7}', None, 1),
        (b"not json", None, 1),
        (b'"text"', None, 1),
        (b'{"data": {"items": [1, 2, 3, 4]}}', ("data", "items"), 4),
        (b'{"data": {}}', ("data", "items"), 0),
        (b"[1, 2]", (), 2),
        (b'{"items": 3}', ("items",), 0),
    ],
)
def test_json_items(body: bytes, members: tuple[str, ...] | None, items: int) -> None:
    assert json_items(body, members) == items


def test_rules_parse_and_refuse_with_a_reason() -> None:
    rule = AppMessageRule.parse("GET /poll=$.data.items")
    assert (rule.method, rule.pattern, rule.members) == ("GET", "/poll", ("data", "items"))
    assert str(rule) == "GET /poll=$.data.items"
    assert AppMessageRule.parse("/api/*=$").members == ()
    for bad, why in [
        ("/poll", "is not PATH"),
        ("/poll=items", "the place must be"),
        ("poll=$", "must start"),
        ("/p=$.a..b", "empty member"),
    ]:
        with pytest.raises(ValueError, match=why):
            AppMessageRule.parse(bad)


def test_a_body_over_the_limit_counts_as_one() -> None:
    body = JsonBody(None)
    body.feed(b"[" + b"1," * (BODY_LIMIT // 2))
    body.feed(b"1]")
    assert body.messages() == 1


def _polls(
    *bodies: bytes, classifier: Classifier | None = None, content_type: str = "application/json"
) -> ConnectionRecord:
    analyzer = ConnectionAnalyzer(
        ConnectionOpened(1, 0.0, "127.0.0.1:5000", "127.0.0.1:8000", "reverse"), classifier=classifier
    )
    for n, body in enumerate(bodies):
        analyzer.feed(C2S, b"GET /poll?after=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n, n + 0.1)
        if body:
            half = len(body) // 2
            head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % content_type.encode()
            analyzer.feed(S2C, head + b"%x\r\n%s\r\n" % (half, body[:half]), n + 0.2)
            analyzer.feed(S2C, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - half, body[half:]), n + 0.3)
        else:
            analyzer.feed(S2C, b"HTTP/1.1 204 No Content\r\n\r\n", n + 0.2)
    return analyzer.close(len(bodies) + 1.0)


def test_a_poll_delivers_the_items_of_its_json_array() -> None:
    report = build_report([_polls(b'[{"n": 1}, {"n": 2}, {"n": 3}]', b"", b'{"messages": [{"n": 4}]}', b"[]")])
    poll = report.transport("short_poll")
    assert poll.messages.server_to_client == 3 and poll.empty_polls == 1
    assert poll.app_messages.server_to_client == 4
    assert poll.wire_bytes_per_app_message == pytest.approx(poll.wire_bytes.total / 4)
    plain = build_report([_polls(b"[1, 2, 3]", b"[4]", content_type="text/plain")]).transport("short_poll")
    assert plain.app_messages.server_to_client == 2  # not JSON by its media type: one per body


def test_a_rule_says_where_the_items_are() -> None:
    bodies = (b'{"data": {"items": [1, 2]}, "cursor": 9}', b'{"data": {"items": [3]}, "cursor": 10}')
    assert build_report([_polls(*bodies)]).transport("short_poll").app_messages.server_to_client == 2
    rules = Classifier(app_messages=(AppMessageRule.parse("GET /poll=$.data.items"),))
    assert build_report([_polls(*bodies, classifier=rules)]).transport("short_poll").app_messages.server_to_client == 3


def test_the_verdict_compares_per_application_message_and_says_so() -> None:
    sse = ConnectionAnalyzer(ConnectionOpened(2, 0.0, "127.0.0.1:5001", "127.0.0.1:8000", "reverse"))
    sse.feed(C2S, b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n", 0.1)
    events = b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    sse.feed(
        S2C,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(events), events),
        0.2,
    )
    report = build_report([_polls(b"[1, 2]", b"[3, 4]"), sse.close(1.0)])
    text = render(report, "markdown")
    assert "per application message" in text and "Wire per app message" in text


def test_a_bad_rule_is_one_line_and_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    capture = tmp_path / "x.rtcap"
    capture.write_bytes(b"")
    result = CliRunner().invoke(rtinspect, ["report", str(capture), "--app-messages", "/poll=items"])
    assert result.exit_code == 2 and "the place must be $ or $.member" in result.output
