"""The Python client's package (clients/python): its generated code is what `make sdk` writes,
it installs beside the server package without either shadowing the other, and its policy
(deadlines, retry keys) covers every RPC. The calls themselves: tests/test_client_python.py."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLIENT = REPO / "clients" / "python"


def load_generator():
    spec = importlib.util.spec_from_file_location("kamicore_client_generate",
                                                  CLIENT / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()
SOURCES = GENERATOR.sources()


@pytest.mark.parametrize("path", sorted(SOURCES), ids=lambda path: path.name)
def test_the_committed_client_code_is_what_make_sdk_generates(path):
    assert path.exists() and path.read_text() == SOURCES[path], (
        f"{path.relative_to(REPO)} differs from what clients/python/generate.py writes: "
        f"run `make sdk` and commit the result")


def test_no_generated_file_is_left_over_and_each_says_do_not_edit():
    committed = {path for path in (GENERATOR.PACKAGE / "v1").iterdir() if path.is_file()}
    assert committed <= set(SOURCES), f"stale: {sorted(committed - set(SOURCES))}"
    assert all(text.startswith("# DO NOT EDIT") for text in SOURCES.values())
    assert {path.name for path in SOURCES} >= {"orders_pb2.py", "orders_pb2.pyi",
                                               "orders_pb2_grpc.py", "orders_pb2_grpc.pyi",
                                               "_services.py"}


def test_server_and_client_packages_import_side_by_side_as_their_own():
    """One process, both installed: each package's modules come from its own installed files,
    and the client's messages live in its own descriptor pool (the server registers the same
    kamicore.v1 symbols in protobuf's default one)."""
    from kamicore.v1 import orders_pb2 as server_orders
    from kamicore_client.v1 import orders_pb2 as client_orders
    from kamicore_client.v1 import orders_pb2_grpc

    import kamicore_client

    installed = Path(importlib.metadata.distribution("kamicore-client").locate_file(""))
    assert Path(kamicore_client.__file__).is_relative_to(installed)
    assert Path(client_orders.__file__).parent == Path(kamicore_client.__file__).parent / "v1"
    assert not Path(client_orders.__file__).is_relative_to(CLIENT), "not the source tree"
    assert orders_pb2_grpc.OrdersStub.__module__ == "kamicore_client.v1.orders_pb2_grpc"
    assert server_orders.DESCRIPTOR.pool is not client_orders.DESCRIPTOR.pool
    request = client_orders.CreateOrderRequest(idempotency_key="k")
    assert server_orders.CreateOrderRequest.FromString(
        request.SerializeToString()).idempotency_key == "k"


def test_the_two_distributions_share_no_file_so_install_order_cannot_matter():
    """pip would overwrite a file both distributions install (the server's kamicore/v1 once
    did exactly that to partners' stubs); with no path in common, whichever is installed first,
    each keeps its own files."""
    server = {str(path) for path in importlib.metadata.files("kamicore")}
    client = {str(path) for path in importlib.metadata.files("kamicore-client")}
    code = {path for path in client if path.endswith((".py", ".pyi"))}
    assert code and not server & client
    assert {path.split("/")[0] for path in code} == {"kamicore_client"}


def test_importing_the_client_alone_never_loads_the_server_package():
    result = subprocess.run(
        [sys.executable, "-c", "import sys, kamicore_client; from kamicore_client.v1 import "
         "orders_pb2; print(sorted(m for m in sys.modules if m.split('.')[0] == 'kamicore'))"],
        capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0 and result.stdout.strip() == "[]", result


def test_every_rpc_has_a_default_deadline_and_every_retry_key_is_a_real_field():
    from kamicore_client import policy
    from kamicore_client._services import METHODS
    from kamicore_client.v1 import orders_pb2, redemption_pb2

    assert set(policy.DEADLINES_SECONDS) == set(METHODS) and len(METHODS) >= 30
    assert all(seconds > 0 for seconds in policy.DEADLINES_SECONDS.values())
    inputs = {"/kamicore.v1.Orders/CreateOrder": orders_pb2.CreateOrderRequest,
              "/kamicore.v1.Orders/ConfirmPayment": orders_pb2.ConfirmPaymentRequest,
              "/kamicore.v1.Redemption/Redeem": redemption_pb2.RedeemRequest}
    assert set(policy.RETRY_KEYS) == set(inputs)
    for method, (field, _) in policy.RETRY_KEYS.items():
        assert field in inputs[method].DESCRIPTOR.fields_by_name
    assert set(policy.ITEM_KEYS) <= set(METHODS)
    assert "request_id" in redemption_pb2.RedeemRequest.DESCRIPTOR.fields_by_name


def test_keys_are_generated_on_a_copy_kept_when_given_and_a_payment_reference_never_invented():
    from kamicore_client import policy
    from kamicore_client.v1 import orders_pb2, redemption_pb2

    create = "/kamicore.v1.Orders/CreateOrder"
    given = orders_pb2.CreateOrderRequest(idempotency_key="mine")
    assert policy.with_key(create, given) == (given, True)
    empty = orders_pb2.CreateOrderRequest()
    sent, keyed = policy.with_key(create, empty)
    assert keyed and len(sent.idempotency_key) == 32 and empty.idempotency_key == ""
    pay = orders_pb2.ConfirmPaymentRequest(order_id="o")
    assert policy.with_key("/kamicore.v1.Orders/ConfirmPayment", pay) == (pay, False)
    batch = redemption_pb2.RedeemBatchRequest(items=[
        redemption_pb2.RedeemRequest(code="A", request_id="r-1"),
        redemption_pb2.RedeemRequest(code="B")])
    sent, keyed = policy.with_key("/kamicore.v1.Redemption/RedeemBatch", batch)
    assert keyed and sent.items[0].request_id == "r-1" and len(sent.items[1].request_id) == 32
    assert batch.items[1].request_id == ""
    cancel = orders_pb2.CancelOrderRequest(order_id="o")
    assert policy.with_key("/kamicore.v1.Orders/CancelOrder", cancel) == (cancel, False)


def _fresh_venv(path: Path) -> Path:
    """A venv of the system's python with nothing of kamicore in it: the project venv's other
    packages (grpcio, protobuf, ...) are reached through a .pth over symlinks, so pip installs
    only the two packages under test (no downloads)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    deps = path / "deps"
    deps.mkdir()
    ours = Path(importlib.metadata.distribution("kamicore-client").locate_file(""))
    for entry in ours.iterdir():
        if not entry.name.startswith("kamicore") and entry.name != "__pycache__":
            (deps / entry.name).symlink_to(entry)
    [site] = path.glob("lib/python3*/site-packages")
    (site / "deps.pth").write_text(f"{deps}\n")
    return path / "bin" / "python"


@pytest.mark.parametrize("order", [("client", "server"), ("server", "client")],
                         ids=lambda order: " then ".join(order))
def test_installed_in_either_order_into_a_fresh_venv_each_package_keeps_its_own(tmp_path, order):
    python = _fresh_venv(tmp_path / "venv")
    sources = {"client": str(CLIENT), "server": str(REPO)}
    for package in order:  # the server's build reuses the tree's build/ of `make install`
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                        "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                        sources[package]], check=True, capture_output=True, timeout=600)
    check = (
        "import kamicore.v1.orders_pb2 as s, kamicore_client.v1.orders_pb2 as c, "
        "kamicore_client.v1.orders_pb2_grpc as g\n"
        "assert s.DESCRIPTOR.pool is not c.DESCRIPTOR.pool\n"
        "assert g.OrdersStub.__module__ == 'kamicore_client.v1.orders_pb2_grpc'\n"
        "print(s.__file__); print(c.__file__)")
    result = subprocess.run([str(python), "-c", check], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    server_file, client_file = (Path(line) for line in result.stdout.split())
    assert server_file.parent.parent.name == "kamicore" and server_file.is_relative_to(tmp_path)
    assert client_file.parent.parent.name == "kamicore_client"
    assert client_file.is_relative_to(tmp_path)


TYPED_CALLER = '''
from kamicore_client import AsyncClient, Client
from kamicore_client.v1 import orders_pb2, redemption_pb2


def sync(key: str) -> int:
    with Client("127.0.0.1:1", key) as client:
        reply = client.orders.create_order(orders_pb2.CreateOrderRequest())
        order_id: str = reply.order.order_id
        for answer in client.redemption.redeem_stream([redemption_pb2.RedeemRequest(code="A")]):
            request_id: str = answer.request_id
        return reply.status


async def asynchronous(key: str) -> None:
    async with AsyncClient("127.0.0.1:1", key) as client:
        reply = await client.orders.get_order(orders_pb2.GetOrderRequest(order_id="o"))
        wrong: int = reply.order.order_id
        await client.orders.get_order(redemption_pb2.RedeemRequest())
'''


def test_the_typed_faces_type_a_callers_code(tmp_path):
    """mypy over a caller's code: replies are typed through the wrapper (sync and asyncio), and
    exactly the two planted mistakes are reported."""
    (tmp_path / "caller.py").write_text(TYPED_CALLER)
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                             "--python-executable", sys.executable, "caller.py"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, result.stdout
    assert "caller.py:18:" in errors[0] and '"str", variable has type "int"' in errors[0]
    assert "caller.py:19:" in errors[1] and "RedeemRequest" in errors[1]
