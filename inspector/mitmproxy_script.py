"""The addon as a mitmproxy script: ``mitmdump -s "$(rtinspect addon-path)"``."""

from inspector.addon import RtInspect

addons = [RtInspect()]
