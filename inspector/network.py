"""Network conditions the proxy adds: round-trip time, jitter and bandwidth, per connection.

This module is the model, with no sockets and no mitmproxy: the figures
(:class:`NetworkConditions`, the named :data:`PRESETS`), how the command line
spells them (:func:`network_conditions`), and :class:`Link`, one direction of
one connection, which says when each byte received at a given time may be
forwarded. The relay (:class:`inspector.addon.ShapedTCPLayer`) holds the bytes
until then.

A direction is a token bucket followed by a delay:

- bandwidth: a token bucket of ``rate`` bytes per second whose depth is one
  piece (:data:`MIN_PIECE` bytes, or 10 ms at the rate if that is more); bytes
  leave it in pieces of at most that size, so a large read is forwarded
  smoothly rather than in one burst after its last byte;
- delay: each piece then waits ``rtt / 2``, give or take up to ``jitter``
  (uniformly at random, never below zero), but never leaves before the piece
  before it: bytes of one direction are never reordered.

Rates are in bits per second, decimal, as ``tc`` and browsers' developer tools
give them: ``kbit`` is 1,000 bits per second, ``mbit`` 1,000,000; ``kbyte`` and
``mbyte`` are 1,000 and 1,000,000 bytes per second.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The capture event (connection 0) that records the conditions a proxy ran under.
NETWORK_EVENT = "network conditions"
#: The smallest piece a rate-limited direction forwards at once, and the token bucket's smallest depth.
MIN_PIECE = 1500
#: A piece is also at most this many seconds of the rate (so at high rates pieces are larger).
PIECE_SECONDS = 0.01
#: The longest delay and jitter accepted (a guard against a value meant in microseconds).
MAX_MILLISECONDS = 60_000.0
#: The slowest rate accepted, bits per second.
MIN_RATE = 1_000


class NetworkError(ValueError):
    """A network condition that cannot be used; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class NetworkConditions:
    """What the proxy adds to each connection. ``rtt_ms`` is split evenly between
    the two directions; ``jitter_ms`` varies each direction's delay by up to that
    much either way; a rate of None is no limit. ``down`` is server to client,
    ``up`` client to server. ``preset`` names the profile the figures started
    from (flags may have changed some of them)."""

    preset: str | None = None
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    down_bits_per_second: int | None = None
    up_bits_per_second: int | None = None

    @property
    def shapes(self) -> bool:
        """Whether these conditions change when anything is forwarded."""
        return bool(self.rtt_ms or self.jitter_ms or self.down_bits_per_second or self.up_bits_per_second)

    def describe(self) -> str:
        """The figures in words, e.g. ``4g: 165 ms round trip, 8.1 Mbit/s down, 1.35 Mbit/s up``."""
        figures = [f"{self.rtt_ms:g} ms round trip"]
        if self.jitter_ms:
            figures.append(f"± {self.jitter_ms:g} ms jitter each way")
        figures.append(f"{format_rate(self.down_bits_per_second)} down")
        figures.append(f"{format_rate(self.up_bits_per_second)} up")
        name = f"{self.preset}: " if self.preset else ""
        return name + ", ".join(figures)

    def note(self) -> str:
        """The report's sentence about these conditions."""
        return (
            f"Network conditions added by the proxy: {self.describe()}, per connection, to the bytes it relayed "
            "after TLS. Times in this report are when bytes reached the proxy: they include the client-to-server "
            "delay, not the server-to-client one."
        )

    def to_json(self) -> dict[str, Any]:
        """The conditions as a JSON object (the capture's event data)."""
        return {
            "preset": self.preset,
            "rtt_ms": self.rtt_ms,
            "jitter_ms": self.jitter_ms,
            "down_bits_per_second": self.down_bits_per_second,
            "up_bits_per_second": self.up_bits_per_second,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> NetworkConditions:
        """Read :meth:`to_json`'s object; raises ValueError, KeyError or TypeError if it is not one."""

        def rate(key: str) -> int | None:
            figure = value.get(key)
            return None if figure is None else int(figure)

        preset = value.get("preset")
        return cls(
            preset=None if preset is None else str(preset),
            rtt_ms=float(value.get("rtt_ms", 0.0)),
            jitter_ms=float(value.get("jitter_ms", 0.0)),
            down_bits_per_second=rate("down_bits_per_second"),
            up_bits_per_second=rate("up_bits_per_second"),
        )


@dataclass(frozen=True, slots=True)
class Preset:
    """A named profile and where its figures come from."""

    name: str
    rtt_ms: float
    down_bits_per_second: int | None
    up_bits_per_second: int | None
    source: str

    @property
    def conditions(self) -> NetworkConditions:
        return NetworkConditions(self.name, self.rtt_ms, 0.0, self.down_bits_per_second, self.up_bits_per_second)


#: The presets, by name. Chrome DevTools' figures are those of its NetworkManager.ts
#: (front_end/core/sdk): Slow 3G is 500 kbit/s × 0.8 both ways with 400 ms × 5 latency;
#: Slow 4G (named Fast 3G until May 2024) 1.6 Mbit/s × 0.9 down, 750 kbit/s × 0.9 up,
#: 150 ms × 3.75; Fast 4G 9 Mbit/s × 0.9 down, 1.5 Mbit/s × 0.9 up, 60 ms × 2.75.
#: DevTools adds its latency to each request, a round trip; here it is the round trip.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("slow-3g", 2000.0, 400_000, 400_000, "Chrome DevTools' Slow 3G"),
        Preset("3g", 562.5, 1_440_000, 675_000, "Chrome DevTools' Slow 4G, called Fast 3G until 2024"),
        Preset("4g", 165.0, 8_100_000, 1_350_000, "Chrome DevTools' Fast 4G"),
        Preset(
            "transatlantic",
            80.0,
            None,
            None,
            "distance only: pings between New York and Paris of 77-78 ms (WonderProxy, 2011), rounded up",
        ),
    )
}
#: Other names users know the presets by.
ALIASES = {"fast-3g": "3g", "slow-4g": "3g", "fast-4g": "4g"}

_RATE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z]+)(?:/s)?", re.IGNORECASE)
_RATE_UNITS = {
    "bit": 1,
    "kbit": 1_000,
    "mbit": 1_000_000,
    "gbit": 1_000_000_000,
    "byte": 8,
    "kbyte": 8_000,
    "mbyte": 8_000_000,
    "gbyte": 8_000_000_000,
}
_UNLIMITED = ("unlimited", "none", "off")


def preset_help() -> str:
    """Two lines per preset: its name and figures, then (indented) its source."""
    aliases: dict[str, list[str]] = {}
    for alias, name in ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    lines = []
    for preset in PRESETS.values():
        also = f" (also {', '.join(aliases[preset.name])})" if preset.name in aliases else ""
        lines += [f"{preset.conditions.describe()}{also}", f"    {preset.source}"]
    return "\n".join(lines)


#: How errors name each setting: as the command line's flags.
FLAGS = {"preset": "--network", "rtt": "--rtt", "jitter": "--jitter", "down": "--down", "up": "--up"}


def network_conditions(
    preset: str | None = None,
    *,
    rtt: str | None = None,
    jitter: str | None = None,
    down: str | None = None,
    up: str | None = None,
    names: Mapping[str, str] = FLAGS,
) -> NetworkConditions | None:
    """The conditions the command line asked for, or None if it asked for none.

    ``preset`` gives starting figures; ``rtt`` and ``jitter`` (milliseconds) and
    ``down`` and ``up`` (rates, see :func:`parse_rate`) replace them. Raises
    :class:`NetworkError` for a value that cannot be used, naming the setting
    as ``names`` does (the flags by default).
    """
    if preset is None and rtt is None and jitter is None and down is None and up is None:
        return None
    conditions = NetworkConditions()
    if preset is not None:
        name = ALIASES.get(preset.strip().lower(), preset.strip().lower())
        if name not in PRESETS:
            raise NetworkError(f"{names['preset']} {preset!r}: choose {', '.join([*PRESETS, *ALIASES])}")
        conditions = PRESETS[name].conditions
    return NetworkConditions(
        preset=conditions.preset,
        rtt_ms=parse_milliseconds(rtt, names["rtt"]) if rtt is not None else conditions.rtt_ms,
        jitter_ms=parse_milliseconds(jitter, names["jitter"]) if jitter is not None else conditions.jitter_ms,
        down_bits_per_second=parse_rate(down, names["down"]) if down is not None else conditions.down_bits_per_second,
        up_bits_per_second=parse_rate(up, names["up"]) if up is not None else conditions.up_bits_per_second,
    )


def parse_milliseconds(text: str, what: str = "delay") -> float:
    """``"100"`` or ``"100ms"`` as 100.0; raises :class:`NetworkError` unless from 0 to :data:`MAX_MILLISECONDS`."""
    value = text.strip().lower().removesuffix("ms").strip()
    try:
        milliseconds = float(value)
    except ValueError:
        raise NetworkError(f"{what} {text!r}: give milliseconds, e.g. 100") from None
    if not math.isfinite(milliseconds) or milliseconds < 0 or milliseconds > MAX_MILLISECONDS:
        raise NetworkError(f"{what} {text!r}: give milliseconds from 0 to {MAX_MILLISECONDS:,.0f}")
    return milliseconds


def parse_rate(text: str, what: str = "rate") -> int | None:
    """A rate such as ``1.6mbit``, ``500kbit``, ``2mbyte`` or ``10mbit/s``, in bits per
    second (decimal units); ``unlimited`` is None. Raises :class:`NetworkError`."""
    value = text.strip().lower()
    if value in _UNLIMITED:
        return None
    match = _RATE.fullmatch(value)
    if match is None or match["unit"] not in _RATE_UNITS:
        unit = match["unit"] if match is not None else ""
        if unit.endswith("bps"):
            hint = f"{unit!r} is ambiguous (tc reads it as bytes per second, most people as bits)"
            raise NetworkError(f"{what} {text!r}: {hint}; write e.g. 10mbit or 10mbyte")
        raise NetworkError(f"{what} {text!r}: give a rate such as 500kbit, 1.6mbit or 2mbyte, or unlimited")
    bits = round(float(match["number"]) * _RATE_UNITS[match["unit"]])
    if bits < MIN_RATE:
        raise NetworkError(f"{what} {text!r}: give at least 1kbit")
    return bits


def format_rate(bits_per_second: int | None) -> str:
    """``8.1 Mbit/s``, ``675 kbit/s``, or ``unlimited``."""
    if bits_per_second is None:
        return "unlimited"
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.4g} {unit}"
    return f"{bits_per_second} bit/s"


class Link:
    """One direction of one connection under network conditions.

    :meth:`send` takes the time bytes arrived and how many, and says when each
    piece of them may be forwarded; :meth:`end` says when the end of the stream
    may. Times only ever grow within a direction, so forwarding in the order
    returned keeps every byte in place. ``delay`` and ``jitter`` are in
    seconds, ``bits_per_second`` None for no limit.
    """

    def __init__(
        self,
        delay: float,
        jitter: float = 0.0,
        bits_per_second: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._delay = delay
        self._jitter = jitter
        self._rate = bits_per_second / 8 if bits_per_second else None
        self._depth = max(MIN_PIECE, int(self._rate * PIECE_SECONDS)) if self._rate else 0
        self._random = rng or random.Random()
        #: When the token bucket is full again (GCRA's theoretical arrival time).
        self._full_at = -math.inf
        #: When the latest piece is forwarded.
        self._last = -math.inf

    @property
    def piece(self) -> int:
        """The largest piece forwarded at once (0: reads are forwarded whole)."""
        return self._depth

    def send(self, now: float, size: int) -> list[tuple[float, int]]:
        """``(when, length)`` for each piece of ``size`` bytes that arrived at ``now``, in order."""
        rate = self._rate
        if rate is None:
            return [(self._forwarded(now), size)]
        depth = self._depth
        pieces = []
        for start in range(0, size, depth):
            length = min(depth, size - start)
            leaves = max(now, self._full_at - (depth - length) / rate)
            self._full_at = max(self._full_at, leaves) + length / rate
            pieces.append((self._forwarded(leaves), length))
        return pieces

    def end(self, now: float) -> float:
        """When the end of the stream, noticed at ``now``, may be forwarded: after every byte."""
        return self._forwarded(now)

    def _forwarded(self, leaves: float) -> float:
        delay = self._delay
        if self._jitter:
            delay = max(0.0, delay + self._random.uniform(-self._jitter, self._jitter))
        self._last = max(self._last, leaves + delay)
        return self._last


def links(conditions: NetworkConditions, rng: random.Random | None = None) -> tuple[Link, Link]:
    """The two directions of a connection: (client to server, server to client)."""
    delay, jitter = conditions.rtt_ms / 2000, conditions.jitter_ms / 1000
    return (
        Link(delay, jitter, conditions.up_bits_per_second, rng),
        Link(delay, jitter, conditions.down_bits_per_second, rng),
    )


__all__ = [
    "ALIASES",
    "FLAGS",
    "NETWORK_EVENT",
    "PRESETS",
    "Link",
    "NetworkConditions",
    "NetworkError",
    "Preset",
    "format_rate",
    "links",
    "network_conditions",
    "parse_milliseconds",
    "parse_rate",
    "preset_help",
]
