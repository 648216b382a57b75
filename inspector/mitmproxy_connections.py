"""mitmproxy's connections in a capture's terms.

Shared by the addon, which records connections as mitmproxy relays them, and
by flow files (``mitmdump -w``) read back into capture records.
"""

from __future__ import annotations

from mitmproxy.connection import Client, Server

from .capture import TCP, ConnectionOpened, TlsInfo

#: The key in a relayed TCP flow's metadata under which the addon notes how the
#: connection ended (one of :class:`~inspector.capture.ConnectionClosed`'s
#: reasons). A flow that has it was relayed by the addon.
CLOSE_REASON_KEY = "rtinspect.close_reason"


def address_text(address: tuple[str, int] | tuple[str, int, int, int] | None) -> str:
    """A mitmproxy address as a capture names a peer: ``host:port``, ``[host]:port``
    for IPv6, ``?`` when there is none."""
    if not address:
        return "?"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connection_opened(
    connection_id: int, client: Client, server: Server, client_hello_at: float | None, transport: str = TCP
) -> ConnectionOpened:
    """The record of a connection from ``client`` relayed to ``server``; ``client_hello_at``
    is when the client's TLS handshake began, where that is known; ``transport`` is
    :data:`~inspector.capture.TCP` or :data:`~inspector.capture.QUIC`."""
    return ConnectionOpened(
        connection_id=connection_id,
        timestamp=client.timestamp_start,
        client=address_text(client.peername),
        server=address_text(server.address),
        mode=client.proxy_mode.full_spec,
        tls=tls_info(client, client_hello_at) if client.tls_established else None,
        upstream_tls=tls_info(server, server.timestamp_tcp_setup or server.timestamp_start)
        if server.tls_established
        else None,
        transport=transport,
    )


def tls_info(connection: Client | Server, started: float | None) -> TlsInfo:
    """A side's TLS facts; ``started`` is when its handshake began (ClientHello received or TCP connected)."""
    return TlsInfo(
        version=connection.tls_version,
        sni=connection.sni,
        alpn=connection.alpn.decode("ascii", "replace") if connection.alpn else None,
        cipher=connection.cipher,
        handshake_started=started,
        handshake_finished=connection.timestamp_tls_setup,
    )
