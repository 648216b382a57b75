"""``rtinspect proxy`` as a child process that records the demo's capture.

The proxy is stopped with SIGTERM only after
:func:`~inspector.proxy_process.wait_until_closed` sees every connection
closed in the capture, so the capture ends with each connection's own close.
"""

from __future__ import annotations

import signal

from ..processes import ProcessSample, final_sample
from ..proxy_process import ProxyProcess, ProxyProcessError
from .settings import CONNECT_TIMEOUT, DemoError

__all__ = ["DemoProxy"]


class DemoProxy(ProxyProcess):
    """The demo's proxy (started with :meth:`ProxyProcess.rtinspect`): what goes wrong
    is one line for the user, and a proxy that does not stop cleanly is one of the
    run's problems rather than an error."""

    def wait_listening(self, deadline: float = CONNECT_TIMEOUT) -> None:
        try:
            super().wait_listening(deadline)
        except ProxyProcessError as error:
            raise DemoError(str(error)) from None

    def stop_problem(self) -> str | None:
        """SIGTERM, so the proxy closes the capture; a one-line problem, or None if it stopped cleanly."""
        try:
            status = self.stop(deadline=CONNECT_TIMEOUT)
            return None if status == 0 else f"the proxy exited with status {status}: {self.error_output()}"
        except ProxyProcessError:
            return f"the proxy did not stop within {CONNECT_TIMEOUT:g} s of SIGTERM and was killed"
        finally:
            self.close()

    def stop_measured(self, timeout: float = CONNECT_TIMEOUT) -> tuple[str | None, ProcessSample | None]:
        """:meth:`stop_problem`, and the proxy's last CPU times (its own, and its analyser's,
        which it waits for before it exits), read once it has exited and before it is waited
        for; None where they cannot be read."""
        final = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            final = final_sample(self.process.pid, timeout)
        return self.stop_problem(), final

    def error_output(self) -> str:
        """The last line the proxy printed (its error, when it failed)."""
        lines = [line.strip() for line in (*self.stdout.splitlines(), *self.stderr.splitlines()) if line.strip()]
        return lines[-1] if lines else "no output"
