"""``rtinspect demo``: the experiment, end to end, on this machine.

The demo server offers one feed over every transport, and over Socket.IO
(python-socketio, long polling upgraded to WebSocket); the rtinspect proxy
relays to it and records a capture; real clients read the whole feed through
the proxy, with the same message count, rate and size. The transports run one
after another, each against a fresh demo-server process and a fresh proxy
process, so what each cost the server, the proxy and (``--browser``) the page
is measured apart. Then the capture is reported like any other, with rules
that pin the demo's paths to their transports, next to what the clients
themselves measured: messages received, lost and duplicated, and delivery
latency (receipt time minus the server's ``sent_at``; server and clients share
this machine's clock), the costs, and a verdict per dimension.

- :mod:`.settings`: what a run is asked to do, and the demo's transports;
- :mod:`.run`: the run and the files written; :mod:`.sequence`, one transport's
  turn: the server (:mod:`.server_process`), the proxy (:mod:`.recording_proxy`)
  and the clients, sampled from ``/proc`` (:mod:`inspector.processes`) into
  :mod:`.costs`; :mod:`.captures` joins the turns' captures;
- :mod:`.clients`: ``--clients N`` Python clients per transport, counting into
  a :class:`~.tally.ClientTally` each; the Socket.IO run's is
  :mod:`.socketio_client`, its figures the report of its own run's
  (:func:`.result.run_figures`);
- :mod:`.page`: with ``--browser``, the demo page in headless Chromium
  (:mod:`.chromium`) as the client instead, and what it cost the page
  (:mod:`.browser_cost`);
- ``--http2``: every transport at once over HTTP/1.1 and h2 (:mod:`.h2websocket`,
  :mod:`.protocols`), without the costs; ``--http3`` adds h3 and WebTransport
  (:mod:`.h3clients`, served by :mod:`demo_server.h3`);
- :mod:`.result`: a finished run (:class:`DemoResult`), which :mod:`.display`,
  :mod:`.verdicts` and :mod:`.html` read: what the command prints and what it
  adds to report.html.
"""

from .display import DemoProgress, demo_console, describe_settings, result_renderables
from .result import DemoFiles, DemoResult
from .run import run_demo
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
