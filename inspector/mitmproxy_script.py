"""The addon as a mitmproxy script: ``mitmdump -s "$(rtinspect addon-path)"``.

Options: ``rtinspect_write`` (a capture file), ``rtinspect_client_tls``, and
``rtinspect_metrics_port`` / ``rtinspect_metrics_host`` (Prometheus metrics).
"""

from inspector.addon import RtInspect
from inspector.metrics_addon import RtInspectMetrics

relay = RtInspect()
addons = [relay, RtInspectMetrics(relay)]
