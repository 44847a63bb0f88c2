"""Socket and TLS set-up shared by every DICOM connection the node opens or accepts.

One place for what both directions need: Nagle switched off (DIMSE's small PDUs otherwise
wait for delayed ACKs, about 20 instances/s), TLS contexts for DICOM TLS (PS3.15 B.1,
TLS 1.2 or later only), and where to connect to reach one of the node's own servers.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pynetdicom.events import Event

    from service.config import TlsSettings


#: Bind addresses that mean "every interface of this host"; nothing can connect to them.
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
LOOPBACK = "127.0.0.1"


def connect_host(bind_address: str) -> str:
    """The host to connect to for a server bound to ``bind_address`` on this host.

    A wildcard bind is reached on IPv4 loopback (a dual-stack ``::`` socket accepts it too);
    any other address, such as compose's service name ``listener``, is used as it is.
    """
    return LOOPBACK if bind_address in WILDCARD_ADDRESSES else bind_address


def set_tcp_nodelay(sock: socket.socket) -> None:
    """Switch Nagle off on one socket."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def nodelay_on_connection_open(event: Event) -> None:
    """EVT_CONN_OPEN handler: Nagle off on the association's socket (pynetdicom never sets it)."""
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        set_tcp_nodelay(transport.socket)


def server_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The listener's TLS context; a client certificate is required when configured."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=tls.certificate, keyfile=tls.private_key)
    if tls.ca_certificates is not None:
        context.load_verify_locations(cafile=tls.ca_certificates)
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_NONE
    return context


def client_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The sender's TLS context: the peer's certificate must name its host or IP (SAN)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_certificates)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.load_cert_chain(certfile=tls.certificate, keyfile=tls.private_key)
    return context
