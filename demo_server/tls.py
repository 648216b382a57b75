"""A throwaway certificate authority and a server certificate, for serving the demo over TLS.

Made with ``trustme`` for ``127.0.0.1`` and ``localhost`` and written to a
folder the caller owns (usually a temporary one): nothing is installed in any
trust store. Clients that should trust the server load :attr:`TlsFiles.ca_cert`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

#: The names the server certificate is valid for.
SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA's certificate, and the server's certificate chain and key."""

    ca_cert: Path
    cert_chain: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


def make_tls_files(folder: Path) -> TlsFiles:
    """A new CA and a server certificate signed by it, written to ``folder`` (which must exist)."""
    ca = trustme.CA(organization_name="rtinspect demo")
    leaf = ca.issue_cert(*SERVER_NAMES)
    files = TlsFiles(
        ca_cert=folder / "demo-ca.pem", cert_chain=folder / "server-chain.pem", key=folder / "server-key.pem"
    )
    ca.cert_pem.write_to_path(files.ca_cert)
    leaf.private_key_pem.write_to_path(files.key)
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(files.cert_chain, append=True)
    return files
