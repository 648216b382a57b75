"""Credentials kept out of reports.

A capture holds everything that passed through the proxy; a report is made to
be shared. The report carries only one kind of string that came from inside
the traffic: request targets (a few per connection, for people reading the
connection list). Header values never reach it, so ``Authorization``,
``Proxy-Authorization``, ``Cookie`` and ``Set-Cookie`` stay in the capture.
What a target can carry is redacted here, when the report is built: the
userinfo of an absolute-form or authority-form target (``user:password@``),
and the values of query (and fragment) parameters whose names say they are
credentials. Byte counts never depend on it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

#: What replaces a credential.
REDACTED = "REDACTED"

#: A query parameter is sensitive when one of the words in its name is one of these
#: (``access_token``, ``apiKey``, ``X-Amz-Signature``, ``client_secret``, ``sig``, ...).
SENSITIVE_PARAMETER_WORDS = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "jwt",
        "key",
        "passwd",
        "password",
        "pwd",
        "secret",
        "session",
        "sessionid",
        "sig",
        "signature",
        "token",
    }
)

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_PARAMETER_SEPARATOR = re.compile(r"([&;])")


def sensitive_parameter(name: str) -> bool:
    """Whether a query parameter named ``name`` (as sent, percent-encoded) carries a credential."""
    words = _NOT_WORD.split(_CAMEL_BOUNDARY.sub("_", unquote_plus(name)).lower())
    return any(word in SENSITIVE_PARAMETER_WORDS for word in words)


def redact_target(target: str) -> str:
    """A request target with its credentials replaced by :data:`REDACTED`.

    The userinfo of ``http://user:password@host/...`` and ``user:password@host:443``
    goes, and so do the values of sensitive parameters in the query and the
    fragment; everything else is kept as it was sent.
    """
    rest, hash_mark, fragment = target.partition("#")
    base, question_mark, query = rest.partition("?")
    return (
        _without_userinfo(base) + question_mark + _redact_parameters(query) + hash_mark + _redact_parameters(fragment)
    )


def _without_userinfo(base: str) -> str:
    if base.startswith("/"):
        return base
    scheme, separator, after = base.partition("://")
    if not separator:
        scheme, after = "", base
    authority, slash, path = after.partition("/")
    _, at, host = authority.rpartition("@")
    if not at:
        return base
    return f"{scheme}{separator}{REDACTED}@{host}{slash}{path}"


def _redact_parameters(query: str) -> str:
    if "=" not in query:
        return query
    parts = _PARAMETER_SEPARATOR.split(query)
    for i in range(0, len(parts), 2):
        name, equals, value = parts[i].partition("=")
        if equals and value and sensitive_parameter(name):
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)
