"""Reports keep credentials out: request targets lose theirs by default, header values never appear.

The traffic is real: raw requests through ``rtinspect proxy`` to a scripted
server, carrying every kind of secret a request or response can carry. The
reports are made as users make them: ``rtinspect report`` in every format and
the proxy's own ``--report``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import ScriptedServer, respond_with, run_rtinspect, running_proxy
from test_proxy import exchange

from inspector.redact import REDACTED, redact_target, sensitive_parameter
from inspector.render import FORMATS

#: Credentials that travel in request targets: redacted unless --no-redact.
TARGET_SECRETS = ("tok-9f1c", "pw-77aa", "key-51b0", "sig-0b0e")
#: Credentials that travel in header fields: in no report, whatever the options.
HEADER_SECRETS = ("auth-31d4", "cookie-8e2b", "proxy-c0de", "setcookie-e1e1", "illegal-5a5a")

REQUESTS = (
    (
        b"GET /feed?access_token=tok-9f1c&page=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer auth-31d4\r\nCookie: sid=cookie-8e2b; theme=dark\r\nConnection: close\r\n\r\n"
    ),
    (
        b"GET http://alice:pw-77aa@127.0.0.1/login?api_key=key-51b0&X-Amz-Signature=sig-0b0e HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nProxy-Authorization: Basic proxy-c0de\r\nConnection: close\r\n\r\n"
    ),
    # Not a valid header line: the anomaly must say so without quoting it.
    b"GET /who HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization : Bearer illegal-5a5a\r\nConnection: close\r\n\r\n",
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nSet-Cookie: session=setcookie-e1e1; HttpOnly\r\nContent-Length: 2\r\n"
    b"Connection: close\r\n\r\nok"
)


@dataclass(frozen=True)
class Recorded:
    capture: Path
    #: The proxy's --report, made with redaction (the default) and with --no-redact.
    redacted_report: Path
    kept_report: Path


@pytest.fixture(scope="module")
def recorded(confdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    folder = tmp_path_factory.mktemp("secrets")
    result = Recorded(folder / "secrets.rtcap", folder / "redacted.json", folder / "kept.json")
    with ScriptedServer(respond_with(RESPONSE)) as server:
        for report, options in ((result.redacted_report, ()), (result.kept_report, ("--no-redact",))):
            capture = result.capture if report is result.redacted_report else None
            with running_proxy(
                server.url, "--report", str(report), *options, confdir=confdir, capture=capture
            ) as proxy:
                for request in REQUESTS:
                    assert exchange(proxy.port, request) == RESPONSE
                assert proxy.stop() == 0, proxy.stderr
    yield result


def report_text(capture: Path, fmt: str, *options: str) -> str:
    result = run_rtinspect("report", str(capture), "-f", fmt, "--connections", *options)
    assert result.returncode == 0, result.stderr
    return result.stdout


def targets(report: dict[str, Any]) -> list[str]:
    return [target for connection in report["connections"] for target in connection["targets"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_format_shows_a_credential(recorded: Recorded, fmt: str) -> None:
    text = report_text(recorded.capture, fmt)
    assert [s for s in TARGET_SECRETS + HEADER_SECRETS if s in text] == []
    if fmt != "table":  # the terminal table leaves targets out when they do not fit
        assert REDACTED in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_redact_shows_targets_as_sent_and_still_no_header_value(recorded: Recorded, fmt: str) -> None:
    text = report_text(recorded.capture, fmt, "--no-redact")
    if fmt != "table":
        assert [s for s in TARGET_SECRETS if s not in text] == []
    assert [s for s in HEADER_SECRETS if s in text] == []


def test_the_proxy_report_is_redacted_unless_asked(recorded: Recorded) -> None:
    redacted = recorded.redacted_report.read_text()
    kept = recorded.kept_report.read_text()
    assert [s for s in TARGET_SECRETS + HEADER_SECRETS if s in redacted] == []
    assert [s for s in TARGET_SECRETS if s not in kept] == []
    assert [s for s in HEADER_SECRETS if s in kept] == []
    assert sorted(targets(json.loads(redacted))) == [
        "/feed?access_token=REDACTED&page=2",
        "http://REDACTED@127.0.0.1/login?api_key=REDACTED&X-Amz-Signature=REDACTED",
    ]


def test_redaction_changes_no_figure(recorded: Recorded) -> None:
    redacted = json.loads(report_text(recorded.capture, "json"))
    kept = json.loads(report_text(recorded.capture, "json", "--no-redact"))
    assert targets(redacted) != targets(kept)
    for report in (redacted, kept):
        for connection in report["connections"]:
            del connection["targets"]
    assert redacted == kept
    sent = sum(map(len, REQUESTS))
    assert sum(c["wire_bytes"]["client_to_server"] for c in kept["connections"]) == sent
    assert sum(c["wire_bytes"]["server_to_client"] for c in kept["connections"]) == len(RESPONSE) * len(REQUESTS)


@pytest.mark.parametrize(
    ("target", "redacted"),
    [
        ("/feed?token=abc&page=2", "/feed?token=REDACTED&page=2"),
        ("/a?accessToken=1;apiKey=2&sort=asc", "/a?accessToken=REDACTED;apiKey=REDACTED&sort=asc"),
        ("/a?client_secret=s&password=p&sig=x", "/a?client_secret=REDACTED&password=REDACTED&sig=REDACTED"),
        ("/a?auth=1&author=me&key=k", "/a?auth=REDACTED&author=me&key=REDACTED"),
        ("/a?access%5Ftoken=1&q=password+reset", "/a?access%5Ftoken=REDACTED&q=password+reset"),
        ("/a?token&token=", "/a?token&token="),
        ("/callback#access_token=t&state=s", "/callback#access_token=REDACTED&state=s"),
        ("http://user:pw@example.com:8080/x?y=1", "http://REDACTED@example.com:8080/x?y=1"),
        ("user:pw@example.com:443", "REDACTED@example.com:443"),
        ("example.com:443", "example.com:443"),
        ("/mail/a@b.example?to=c@d", "/mail/a@b.example?to=c@d"),
        ("*", "*"),
    ],
)
def test_redact_target(target: str, redacted: str) -> None:
    assert redact_target(target) == redacted


def test_sensitive_parameter_names_are_matched_by_word() -> None:
    sensitive = ["token", "id_token", "refreshToken", "X-Amz-Signature", "api-key", "APIKEY", "session_id", "jwt"]
    ordinary = ["page", "author", "keyboard", "signed", "tokens_left", "q"]
    assert [name for name in sensitive if not sensitive_parameter(name)] == []
    assert [name for name in ordinary if sensitive_parameter(name)] == []
