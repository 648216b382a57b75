"""What a transport cost the page in Chromium, read over the DevTools protocol.

Over one transport's run (from just before the feed starts until its client
is done) the page's ``Performance.getMetrics`` are read twice and subtracted:
layouts and style recalculations (how many, and their time), time in script
and in all main-thread tasks, and the growth of the JavaScript heap (both
readings after a garbage collection, so it is what the run left behind).
``ScriptDuration`` is Chromium's own figure; it counts less of the work run
from fetch callbacks (the stream, the polls) than of event handlers
(WebSocket, EventSource), and has been seen to stay 0 for a page whose work
was all in fetch callbacks; ``TaskDuration`` is the figure to compare.

Responsiveness is INP as web-vitals computes it: while the feed runs, the run
clicks the page's "Compact rows" button every :data:`~.settings.CLICK_INTERVAL`
seconds with ``Input.dispatchMouseEvent`` (trusted input, as a user's), and
the page keeps, per interaction (``interactionId``), its longest Event Timing
entry. Entries shorter than 16 ms are not reported, so only
``performance.interactionCount`` counts those. INP is then the longest
interaction, skipping one for every 50 interactions (the 98th percentile);
0 when every interaction was under 16 ms. Event Timing rounds durations to 8 ms.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from .chromium import Chromium

#: Performance.getMetrics names and the keys of clients.json's ``browser`` object; durations
#: come in seconds and are kept in milliseconds.
COUNTS = {"LayoutCount": "layout_count", "RecalcStyleCount": "recalc_style_count"}
DURATIONS = {
    "LayoutDuration": "layout_ms",
    "RecalcStyleDuration": "recalc_style_ms",
    "ScriptDuration": "script_ms",
    "TaskDuration": "task_ms",
}
HEAP = "JSHeapUsedSize"
#: Interactions per interaction skipped when INP is taken (web-vitals: the 98th percentile).
INP_SKIP_EVERY = 50
#: The page's INP figures: interactions counted and each observed interaction's duration.
PAGE_INTERACTIONS = "JSON.stringify(window.rtinspectDemo.interactions())"
#: Where the page's "Compact rows" button is, in CSS pixels.
CLICK_TARGET = (
    "(() => { const r = document.getElementById('compact').getBoundingClientRect();"
    " return JSON.stringify([r.left + r.width / 2, r.top + r.height / 2]); })()"
)


@dataclass(frozen=True, slots=True)
class BrowserCost:
    """A transport's cost to the page over its run: ``Performance.getMetrics`` differences
    (durations in milliseconds, heap growth in bytes, negative if the run freed more than it
    kept) and INP over ``interactions`` interactions (None without any)."""

    layout_count: int
    recalc_style_count: int
    layout_ms: float
    recalc_style_ms: float
    script_ms: float
    task_ms: float
    js_heap_bytes: int
    inp_ms: float | None
    interactions: int
    #: Interactions that had an Event Timing entry (16 ms or longer).
    observed_interactions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout_count": self.layout_count,
            "recalc_style_count": self.recalc_style_count,
            "layout_ms": round(self.layout_ms, 3),
            "recalc_style_ms": round(self.recalc_style_ms, 3),
            "script_ms": round(self.script_ms, 3),
            "task_ms": round(self.task_ms, 3),
            "js_heap_bytes": self.js_heap_bytes,
            "inp_ms": self.inp_ms,
            "interactions": self.interactions,
            "observed_interactions": self.observed_interactions,
        }

    @classmethod
    def from_readings(
        cls,
        before: dict[str, float],
        after: dict[str, float],
        heap_before: float,
        heap_after: float,
        interactions: int,
        durations: list[float],
    ) -> BrowserCost:
        counts = {key: max(0, round(after.get(name, 0) - before.get(name, 0))) for name, key in COUNTS.items()}
        millis = {key: max(0.0, (after.get(name, 0) - before.get(name, 0)) * 1000) for name, key in DURATIONS.items()}
        return cls(
            layout_count=counts["layout_count"],
            recalc_style_count=counts["recalc_style_count"],
            layout_ms=millis["layout_ms"],
            recalc_style_ms=millis["recalc_style_ms"],
            script_ms=millis["script_ms"],
            task_ms=millis["task_ms"],
            js_heap_bytes=round(heap_after - heap_before),
            inp_ms=inp(durations, interactions),
            interactions=interactions,
            observed_interactions=len(durations),
        )


def inp(durations: list[float], interactions: int) -> float | None:
    """INP the web-vitals way: of the observed interactions' durations (each interaction's
    longest entry), the longest after skipping one per :data:`INP_SKIP_EVERY` interactions in
    all; 0 if there were interactions but none long enough to be observed; None if none."""
    if not durations:
        return 0.0 if interactions > 0 else None
    longest = sorted(durations, reverse=True)
    return float(longest[min(len(longest) - 1, interactions // INP_SKIP_EVERY)])


async def metrics(browser: Chromium) -> dict[str, float]:
    """The page's ``Performance.getMetrics``, by name."""
    answer = await browser.call("Performance.getMetrics")
    return {metric["name"]: float(metric["value"]) for metric in answer.get("metrics", [])}


async def heap_after_gc(browser: Chromium) -> float:
    """The JavaScript heap in use after a full garbage collection."""
    await browser.call("HeapProfiler.collectGarbage")
    return (await metrics(browser)).get(HEAP, 0.0)


async def click(browser: Chromium, x: float, y: float) -> None:
    """A left click at (``x``, ``y``): the mouse moved there, pressed and released."""
    await browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    for kind in ("mousePressed", "mouseReleased"):
        await browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


async def click_for(browser: Chromium, where: tuple[float, float], seconds: float, interval: float) -> int:
    """Click at ``where`` every ``interval`` seconds for ``seconds`` seconds (the first at once);
    returns how many clicks were sent."""
    began = time.monotonic()
    sent = 0
    while time.monotonic() - began < seconds:
        await click(browser, *where)
        sent += 1
        await asyncio.sleep(max(0.0, began + sent * interval - time.monotonic()))
    return sent


#: The columns of the page's cost, in the terminal and in report.html.
BROWSER_HEADINGS = (
    "Transport",
    "Layouts",
    "Style recalcs",
    "Layout",
    "Style",
    "Script",
    "Tasks",
    "JS heap Δ",
    "INP",
    "Clicks",
)
