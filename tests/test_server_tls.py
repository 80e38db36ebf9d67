"""TLS and mTLS, and configuration from a TOML file and KAMICORE_* variables."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kamicore import config as config_module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def certificate(name: str, issuer_key=None, issuer_name=None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_name or subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key, cert, cert.public_bytes(serialization.Encoding.PEM), pem_key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert, ca_pem, _ = certificate("kamicore test CA", ca=True)
    _, _, server_pem, server_key = certificate("localhost", ca_key, ca_cert.subject)
    _, _, client_pem, client_key = certificate("pos T-01", ca_key, ca_cert.subject)
    files = {"ca": ca_pem, "server": server_pem, "server_key": server_key,
             "client": client_pem, "client_key": client_key}
    for name, content in files.items():
        (folder / f"{name}.pem").write_bytes(content)
    return folder, files


def start(tmp_path, environment: dict):
    port = free_port()
    env = {**os.environ, **environment}
    process = subprocess.Popen(
        [sys.executable, "-m", "kamicore.cli", "--data-dir", str(tmp_path / "data"), "serve",
         "--workers", "1", "--listen", f"127.0.0.1:{port}", "--metrics-listen", ""],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, port


def wait_serving(channel_factory, deadline_seconds: float = 30.0) -> str:
    deadline = time.monotonic() + deadline_seconds
    last = None
    while time.monotonic() < deadline:
        try:
            with channel_factory() as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2)
                return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as error:
            last = error
            time.sleep(0.2)
    raise AssertionError(f"no healthy server: {last}")


def stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.stdout.read()


def test_tls_serves_only_over_tls(tmp_path, pki):
    folder, files = pki
    process, port = start(tmp_path, {"KAMICORE_TLS_CERT": str(folder / "server.pem"),
                                     "KAMICORE_TLS_KEY": str(folder / "server_key.pem")})
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=files["ca"])
        assert wait_serving(lambda: grpc.secure_channel(f"127.0.0.1:{port}", credentials)) == (
            "SERVING")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.RpcError):
                health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(),
                                                        timeout=3)
    finally:
        stop(process)


def test_mtls_refuses_clients_without_a_certificate(tmp_path, pki):
    folder, files = pki
    process, port = start(tmp_path, {"KAMICORE_TLS_CERT": str(folder / "server.pem"),
                                     "KAMICORE_TLS_KEY": str(folder / "server_key.pem"),
                                     "KAMICORE_TLS_CLIENT_CA": str(folder / "ca.pem")})
    try:
        with_client = grpc.ssl_channel_credentials(
            root_certificates=files["ca"], private_key=files["client_key"],
            certificate_chain=files["client"])
        assert wait_serving(lambda: grpc.secure_channel(f"127.0.0.1:{port}", with_client)) == (
            "SERVING")
        without = grpc.ssl_channel_credentials(root_certificates=files["ca"])
        with grpc.secure_channel(f"127.0.0.1:{port}", without) as channel:
            with pytest.raises(grpc.RpcError):
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=3)
    finally:
        stop(process)


def test_config_file_then_environment_then_flags(tmp_path, monkeypatch):
    path = tmp_path / "kamicore.toml"
    path.write_text('[kamicore]\nlisten = "127.0.0.1:6000"\nworkers = 3\n'
                    'hold_seconds_default = 60\n')
    monkeypatch.setenv("KAMICORE_WORKERS", "4")
    loaded = config_module.load(str(path), {"listen": "127.0.0.1:7000", "workers": None})
    assert (loaded.listen, loaded.workers, loaded.hold_seconds_default) == (
        "127.0.0.1:7000", 4, 60)
    defaults = config_module.Config()
    assert (defaults.data_dir, defaults.listen, defaults.metrics_listen) == (
        "var", "127.0.0.1:50051", "127.0.0.1:9464")


@pytest.mark.parametrize("content, message", [
    ('[kamicore]\nlisten_port = 1\n', "unknown setting 'listen_port'"),
    ('[kamicore]\nworkers = "many"\n', "workers must be int"),
])
def test_bad_config_names_the_setting(tmp_path, content, message):
    path = tmp_path / "kamicore.toml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        config_module.load(str(path))
