"""The simulated supplier as its users (tests, benchmarks, demos) drive it: its control API,
callbacks (duplicate, badly signed, for answers given at once), and its command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from aiohttp import web

from kamicore.connectors import Result, close_all, connector_for
from kamicore.connectors.http_callbacks import application
from kamicore.connectors.signing import BAD_SIGNATURE, now_ms, parse_callback, verify

from .supplier_harness import SupplierError, simulated_supplier

wait_seconds = 20.0


@pytest.fixture(scope="module")
def supplier():
    with simulated_supplier(seed=7) as process:
        yield process


@pytest.fixture
def simulator(supplier):
    supplier.reset()
    return supplier


def top_ups_with_callbacks(simulator, request_ids, callbacks_expected, protocol="http"):
    """Top up each request id with a callback URL of a listener; returns the outcomes and the
    callbacks received (request id, verification, result) once `callbacks_expected` came."""
    received = []

    async def body():
        enough = asyncio.Event()

        async def handler(supplier_id, timestamp_ms, payload, signature):
            callback = parse_callback(payload)
            received.append((callback.request_id, verify(
                simulator.secret, timestamp_ms, payload, signature, now_ms()), callback.result))
            if len(received) >= callbacks_expected:
                enough.set()
            return 200, "ok"

        runner = web.AppRunner(application(handler))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/callbacks/sim"
        try:
            connector = connector_for(simulator.endpoint(protocol))
            outcomes = [await connector.top_up(request_id, "p", "bob", 1, "CNY", url)
                        for request_id in request_ids]
            await asyncio.wait_for(enough.wait(), wait_seconds)
            return outcomes
        finally:
            await close_all()
            await runner.cleanup()

    return asyncio.run(body()), received


def test_duplicate_callbacks_are_sent_and_counted(simulator):
    simulator.configure(pending_rate=1.0, late_callback_ms=20, duplicate_callbacks=2)
    outcomes, received = top_ups_with_callbacks(simulator, ["r-1"], 3)
    assert [outcome.result for outcome in outcomes] == [Result.PENDING]
    assert received == [("r-1", None, Result.SUCCEEDED)] * 3
    state = simulator.state()
    assert len(state["callbacks_sent"]) == 3 and state["topups"] == {"r-1": 1}


def test_badly_signed_callbacks_fail_verification(simulator):
    simulator.configure(pending_rate=1.0, late_callback_ms=20, bad_callback_signature_rate=1.0)
    _, received = top_ups_with_callbacks(simulator, ["r-1"], 1, protocol="grpc")
    assert received == [("r-1", BAD_SIGNATURE, Result.SUCCEEDED)]
    assert simulator.state()["callbacks_sent"][0]["bad_signature"] is True


def test_a_failed_pending_top_up_calls_back_failed(simulator):
    simulator.configure(pending_rate=1.0, failure_rate=1.0, late_callback_ms=20)
    _, received = top_ups_with_callbacks(simulator, ["r-1"], 1)
    assert received == [("r-1", None, Result.FAILED)]
    assert simulator.state()["topups"] == {"r-1": 0}


def test_answers_given_at_once_can_be_called_back_too(simulator):
    simulator.configure(callback_on_final=True)
    outcomes, received = top_ups_with_callbacks(simulator, ["r-1", "r-2"], 2)
    assert [outcome.result for outcome in outcomes] == [Result.SUCCEEDED] * 2
    assert sorted(received) == [("r-1", None, Result.SUCCEEDED), ("r-2", None, Result.SUCCEEDED)]


def test_a_request_id_reused_with_other_parameters_is_refused_not_performed(simulator):
    async def body():
        connector = connector_for(simulator.endpoint("grpc"))
        first = await connector.top_up("r-1", "p", "bob", 1, "CNY", "")
        other = await connector.top_up("r-1", "p", "mallory", 1, "CNY", "")
        await close_all()
        return first, other

    first, other = asyncio.run(body())
    assert first.result is Result.SUCCEEDED and other.result is Result.UNKNOWN
    assert "ALREADY_EXISTS" in other.message
    assert simulator.state()["topups"] == {"r-1": 1}


def test_configuration_names_a_bad_setting_and_changes_nothing(simulator):
    for changes, error in [({"failure_rate": 2}, "failure_rate: not a probability in [0, 1]"),
                           ({"speed": 1}, "speed: no such setting"),
                           ({"latency_ms": -1}, "latency_ms: not a non-negative integer"),
                           ({"callback_on_final": "yes"}, "callback_on_final: not true or false"),
                           ({"products": "p"}, "products: not a list of strings")]:
        with pytest.raises(SupplierError, match="400") as raised:
            simulator.configure(**changes)
        assert error in str(raised.value)
    assert simulator.state()["config"]["failure_rate"] == 0.0


def test_reset_forgets_everything_and_restores_the_starting_settings(simulator):
    simulator.configure(failure_rate=1.0)
    outcome = asyncio.run(_top_up_and_close(simulator, "r-1"))
    assert outcome.result is Result.FAILED
    simulator.reset()
    state = simulator.state()
    assert state["topups"] == {} and state["calls"]["TopUp"] == 0
    assert state["config"]["failure_rate"] == 0.0 and state["config"]["seed"] == 7
    assert asyncio.run(_top_up_and_close(simulator, "r-1")).result is Result.SUCCEEDED


async def _top_up_and_close(simulator, request_id):
    try:
        return await connector_for(simulator.endpoint("http")).top_up(
            request_id, "p", "bob", 1, "CNY", "")
    finally:
        await close_all()


def test_failure_rates_between_zero_and_one_mix_outcomes_and_never_double_top_up(simulator):
    simulator.configure(failure_rate=0.5)

    async def body():
        connector = connector_for(simulator.endpoint("http"))
        outcomes = [await connector.top_up(f"r-{n}", "p", "bob", 1, "CNY", "")
                    for n in range(40)]
        await close_all()
        return outcomes

    outcomes = asyncio.run(body())
    results = [outcome.result for outcome in outcomes]
    assert {Result.SUCCEEDED, Result.FAILED} == set(results)
    topups = simulator.state()["topups"]
    assert [topups[f"r-{n}"] for n in range(40)] == [
        1 if result is Result.SUCCEEDED else 0 for result in results]


def test_the_command_line_names_a_bad_flag():
    result = subprocess.run([sys.executable, "-m", "kamicore.connectors.simulator",
                             "--secret-hex", "00", "--failure-rate", "1.5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--failure-rate: not a probability" in result.stderr
    result = subprocess.run([sys.executable, "-m", "kamicore.connectors.simulator",
                             "--secret-hex", "xyz"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--secret-hex: not hex" in result.stderr


def test_the_harness_stops_the_process():
    with simulated_supplier() as process:
        assert process.process.poll() is None
    assert process.process.poll() is not None


TLS_CLIENT = """
import asyncio, sys
from kamicore.connectors import Endpoint, close_all, connector_for
async def main():
    secret = bytes.fromhex(sys.argv[1])
    for protocol, address in (("grpc", sys.argv[2]), ("http", sys.argv[3])):
        connector = connector_for(Endpoint("tls", protocol, address, 5000, secret))
        outcome = await connector.top_up("r-" + protocol, "p", "bob", 1, "CNY", "")
        print(protocol, outcome.result.value)
    await close_all()
asyncio.run(main())
"""


def test_both_wires_work_over_tls_and_an_untrusted_certificate_is_unknown(tmp_path):
    from .test_server_tls import certificate
    ca_key, ca_cert, ca_pem, _ = certificate("supplier test CA", ca=True)
    _, _, chain_pem, key_pem = certificate("localhost", ca_key, ca_cert.subject)
    files = {"ca": ca_pem, "chain": chain_pem, "key": key_pem}
    for name, content in files.items():
        (tmp_path / f"{name}.pem").write_bytes(content)
    with simulated_supplier(tls=(tmp_path / "chain.pem", tmp_path / "key.pem")) as supplier:
        assert supplier.grpc_address.startswith("grpcs://")
        assert supplier.http_address.startswith("https://")

        def client(**environment):
            result = subprocess.run(
                [sys.executable, "-c", TLS_CLIENT, supplier.secret.hex(),
                 supplier.grpc_address, supplier.http_address],
                capture_output=True, text=True, timeout=60,
                env={**os.environ, **environment})
            assert result.returncode == 0, result.stderr
            return result.stdout.split("\n")[:2]

        ca_file = str(tmp_path / "ca.pem")
        assert client(GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=ca_file, SSL_CERT_FILE=ca_file) \
            == ["grpc SUCCEEDED", "http SUCCEEDED"]
        assert client() == ["grpc UNKNOWN", "http UNKNOWN"]  # the system roots do not trust it
        assert supplier.state()["topups"] == {"r-grpc": 1, "r-http": 1}
