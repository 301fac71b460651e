"""API-SSL: certificates are verified unless the config explicitly says not to."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ispqueue.config import RouterConfig
from ispqueue.routeros.client import RouterClient
from ispqueue.routeros.errors import RouterError, RouterTimeout, RouterUnreachable
from ispqueue.routeros.sim import RouterSim


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, written as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "router.pem", folder / "router.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_sim(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    sim = RouterSim(host="127.0.0.1", port=0, username="admin", password="secret",
                    tls_context=context, seed=1)
    sim.start()
    yield sim
    sim.stop()


def tls_config(sim: RouterSim, **changes) -> RouterConfig:
    config = RouterConfig(name="edge-tls", host="127.0.0.1", port=sim.port, username="admin",
                          password="secret", tls=True, timeout=2.0)
    return dataclasses.replace(config, **changes)


def test_an_untrusted_certificate_is_refused_by_default(tls_sim):
    with pytest.raises(RouterUnreachable, match="TLS"):
        RouterClient.connect(tls_config(tls_sim))


def test_the_configured_ca_file_is_trusted(tls_sim, certificate):
    with RouterClient.connect(tls_config(tls_sim, ca_file=certificate[0])) as client:
        assert client.identity() == "MikroTik"


def test_the_hostname_is_checked(tls_sim, certificate):
    config = tls_config(tls_sim, ca_file=certificate[0], host="localhost")
    with pytest.raises(RouterUnreachable, match="TLS"):
        RouterClient.connect(config)


def test_verification_can_be_switched_off(tls_sim):
    with RouterClient.connect(tls_config(tls_sim, tls_verify=False)) as client:
        assert client.identity() == "MikroTik"


def test_a_plain_client_on_the_tls_port_fails_in_time(tls_sim):
    started = time.monotonic()
    with pytest.raises(RouterError):
        RouterClient.connect(tls_config(tls_sim, tls=False, timeout=0.5))
    assert time.monotonic() - started < 0.5 + 1


def test_cancel_unblocks_a_tls_read(tls_sim):
    closers = []
    config = tls_config(tls_sim, tls_verify=False, timeout=30)
    with RouterClient.connect(config, on_cancel=closers.append) as client:
        tls_sim.faults.hang = True
        timer = threading.Timer(0.2, closers[0])
        timer.start()
        started = time.monotonic()
        with pytest.raises(RouterTimeout, match="cancelled"):
            client.identity()
        assert time.monotonic() - started < 1
        timer.join()
