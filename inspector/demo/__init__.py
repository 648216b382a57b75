"""``rtinspect demo``: the experiment, end to end, on this machine.

The demo server (in a thread) offers one feed over every transport; the
rtinspect proxy (a child process) relays to it and records a capture; one real
client per transport reads the whole feed through the proxy, all at once, with
the same message count, rate and size. Then the capture is reported like any
other, with rules that pin the demo's paths to their transports, next to what
the clients themselves measured: messages received, lost and duplicated, and
delivery latency (receipt time minus the server's ``sent_at``; server and
clients share this machine's clock).

- :mod:`.settings`: what a run is asked to do, and the demo's transports;
- :mod:`.run`: the server, the proxy (:mod:`.recording_proxy`) and the clients,
  then the capture's report and the files written;
- :mod:`.clients`: a Python client per transport, counting into a
  :class:`~.tally.ClientTally` each;
- :mod:`.page`: with ``--browser``, the demo page in headless Chromium
  (:mod:`.chromium`) as the client instead;
- :mod:`.display`: what the command prints.
"""

from .display import DemoProgress, demo_console, describe_settings, result_renderables
from .run import DemoFiles, DemoResult, run_demo
from .settings import TRANSPORT_KEYS, TRANSPORTS, DemoError, DemoSettings, DemoTransport, default_output_folder
from .tally import ClientTally, ProgressCallback

__all__ = [
    "TRANSPORTS",
    "TRANSPORT_KEYS",
    "ClientTally",
    "DemoError",
    "DemoFiles",
    "DemoProgress",
    "DemoResult",
    "DemoSettings",
    "DemoTransport",
    "ProgressCallback",
    "default_output_folder",
    "demo_console",
    "describe_settings",
    "result_renderables",
    "run_demo",
]
