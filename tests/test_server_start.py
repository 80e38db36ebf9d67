"""Starting a server where one already serves: a second `kamicore serve` on the same gRPC
address, the same metrics address or the same data dir refuses with one line and exit 1, and
the first keeps serving every caller. Client commands reach the server the settings name, and
reflection answers under v1 and v1alpha."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from kamicore.v1 import catalog_pb2

from .server_harness import HOST, Server, _clean_environment, free_port

second_server_wait_seconds = 20.0  # a refusal comes at once; a started server runs on


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    base = tmp_path_factory.mktemp("start")
    running = Server(base / "data", base, "first").start()
    try:
        yield running
    finally:
        assert running.stop() == 0, running.logs()[-3000:]


def kamicore(data_dir, *args, settings=None) -> subprocess.CompletedProcess:
    """The command in its own session, so that a server it starts by mistake is stopped with
    all its workers (tests/test_cli_errors.py runs its rows through this too)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kamicore.cli", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        start_new_session=True,
        env={**_clean_environment(), **(settings or {})})
    try:
        stdout, stderr = process.communicate(timeout=second_server_wait_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        raise AssertionError(f"`kamicore {' '.join(args)}` kept running: {stderr[-2000:]}"
                             ) from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def serve(data_dir, listen: str, metrics_listen: str) -> subprocess.CompletedProcess:
    return kamicore(data_dir, "serve", "--workers", "1", "--listen", listen,
                    "--metrics-listen", metrics_listen)


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line of a refused start."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    return lines[0]


def assert_serves_every_caller(server: Server) -> None:
    """Fresh connections (each may land on any process listening on the port) all answer an
    admin's call: none reaches a server that does not know the key."""
    for _ in range(16):
        admin = server.client(server.admin_key, fresh=True)
        reply = admin.catalog.ListSkus(catalog_pb2.ListSkusRequest())
        assert reply is not None
    server.close_channels()


def test_a_second_server_on_the_same_address_refuses(first, tmp_path):
    other = tmp_path / "other"
    line = refusal(serve(other, first.target, f"{HOST}:{free_port()}"))
    assert line == (f"error: --listen {first.target} is already in use (another server?); "
                    "choose another address with --listen")
    assert not other.exists()  # nothing made for a server that did not start
    assert_serves_every_caller(first)


def test_a_second_server_on_the_same_metrics_address_refuses(first, tmp_path):
    line = refusal(serve(tmp_path / "other", f"{HOST}:{free_port()}",
                         f"{HOST}:{first.metrics_port}"))
    assert line.startswith(f"error: --metrics-listen {HOST}:{first.metrics_port} is already "
                           "in use")
    assert "kamicore_stock_codes" in first.metrics()


def test_a_second_server_on_the_same_data_dir_refuses(first):
    line = refusal(serve(first.data_dir, f"{HOST}:{free_port()}", f"{HOST}:{free_port()}"))
    assert line == (f"error: {first.data_dir} is already served by a running kamicore serve "
                    f"(pid {first.process.pid}); stop that one first")
    assert_serves_every_caller(first)
    assert "kamicore_rpcs_total" in first.metrics()  # its metrics were left alone


def test_a_restore_into_a_served_data_dir_is_refused(first, tmp_path):
    kamicore(first.data_dir, "backup", str(tmp_path / "backup")).check_returncode()
    line = refusal(kamicore(first.data_dir, "restore", str(tmp_path / "backup"), "--force"))
    assert "is already served by a running kamicore serve" in line
    assert_serves_every_caller(first)


def test_the_first_start_says_the_master_key_sits_beside_the_data(first):
    assert f"a new master key was written to {first.data_dir / 'master.key'}, beside the " \
           "data" in first.logs()


def test_call_reaches_the_server_the_settings_name(first, tmp_path):
    """--target, then $KAMICORE_TARGET, then the configured listen address."""
    config = tmp_path / "kamicore.toml"
    config.write_text(f'listen = "{first.target}"\n')
    wrong = f"{HOST}:{free_port()}"
    key = {"KAMICORE_KEY": first.admin_key}
    for options, settings in (
            (("--target", first.target), {"KAMICORE_TARGET": wrong}),
            ((), {"KAMICORE_TARGET": first.target, "KAMICORE_LISTEN": wrong}),
            ((), {"KAMICORE_LISTEN": first.target}),
            ((), {"KAMICORE_CONFIG": str(config)})):
        result = kamicore(first.data_dir, "call", *options, "Catalog/GetSku",
                          '{"skuId": "none"}', settings={**key, **settings})
        assert result.returncode == 0, (options, settings, result.stderr)
        assert "SKU_LOOKUP_STATUS_NOT_FOUND" in result.stdout
    missed = kamicore(first.data_dir, "call", "--target", wrong, "Catalog/GetSku", "{}",
                      settings=key)
    assert refusal(missed).startswith(f"error: {wrong}: UNAVAILABLE")


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_answers_under_v1_and_v1alpha(first, version):
    """The two versions are the same messages with the same field numbers."""
    with grpc.insecure_channel(first.target) as channel:
        info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        listing, orders, itself = info(iter([
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="kamicore.v1.Orders"),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol=f"grpc.reflection.{version}.ServerReflection")]),
            timeout=10)
    services = {service.name for service in listing.list_services_response.service}
    assert {"kamicore.v1.Orders", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= services
    assert orders.file_descriptor_response.file_descriptor_proto
    assert itself.file_descriptor_response.file_descriptor_proto, itself.error_response


def test_a_tls_file_that_is_not_there_is_named_before_anything_starts(tmp_path):
    missing = tmp_path / "server.pem"
    result = kamicore(tmp_path / "data", "serve", "--workers", "1", "--listen",
                      f"{HOST}:{free_port()}", "--metrics-listen", "",
                      settings={"KAMICORE_TLS_CERT": str(missing)})
    assert refusal(result) == f"error: tls_cert {missing}: no such file"
    assert not (tmp_path / "data").exists()
