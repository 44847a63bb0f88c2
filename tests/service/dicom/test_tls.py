"""DICOM TLS (PS3.15 B.1): the listener and the sender with a private CA, on loopback."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import free_port

from service.config import PeerSettings, SenderSettings, TlsSettings, load_settings
from service.dicom.sender import send_files
from service.errors import SendError
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pki(folder: Path) -> tuple[TlsSettings, TlsSettings]:
    """A CA, a node certificate and a client certificate, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = _certificate("test CA", ca_key, ca_name, ca_key, ca=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    settings = []
    for name in ("node", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, ca_name, ca_key, ca=False)
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        settings.append(
            TlsSettings(
                certificate=folder / f"{name}.pem",
                private_key=folder / f"{name}.key",
                ca_certificates=folder / "ca.pem",
                require_client_certificate=True,
            )
        )
    return settings[0], settings[1]


def test_store_over_tls_with_client_certificates(tmp_path: Path, study_copy: Path) -> None:
    node_tls, client_tls = _write_pki(tmp_path)
    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port(), "tls": node_tls.model_dump()},
        spool={"path": str(tmp_path / "spool"), "min_free_bytes": 0},
    )
    state = StateStore(settings.database_url)
    server = start_listener(settings, Spool(settings.spool.path), state)
    paths = sorted((study_copy / "drf20").glob("*.dcm"))[:3]
    sender = SenderSettings(network_timeout_s=5, acse_timeout_s=5, dimse_timeout_s=10)
    try:
        report = send_files(
            paths,
            PeerSettings(
                ae_title="UNIPET", host="127.0.0.1", port=settings.listener.port, tls=client_tls
            ),
            sender,
        )
        assert report.stored == 3
        series = state.recent(1)[0]
        assert series.state is SeriesState.RECEIVING and series.received_instances == 3
        # Plain TCP to a TLS listener never gets an association.
        with pytest.raises(SendError, match="association"):
            send_files(
                paths,
                PeerSettings(ae_title="UNIPET", host="127.0.0.1", port=settings.listener.port),
                sender,
            )
    finally:
        server.shutdown()
