"""A real simulated supplier process for tests and benchmarks.

    with simulated_supplier(pending_rate=1.0, late_callback_ms=50) as supplier:
        endpoint = supplier.endpoint("http", timeout_ms=2000)
        ...
        supplier.configure(failure_rate=1.0)
        assert supplier.state()["topups"] == {"r-1": 1}

The process (python -m kamicore.connectors.simulator) binds free ports of 127.0.0.1 (it picks
them itself and says which on its first line), is ready when the context is entered, and is
stopped (SIGTERM, then SIGKILL) when it is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

from kamicore.connectors import Endpoint

start_timeout_seconds = 30.0
stop_timeout_seconds = 10.0
control_timeout_seconds = 10.0


class SupplierError(AssertionError):
    pass


class SimulatedSupplierProcess:
    def __init__(self, process: subprocess.Popen, grpc_address: str, http_address: str,
                 secret: bytes, log_path: str, tls: bool = False):
        self.process = process
        self.grpc_address = grpc_address  # "127.0.0.1:P" ("grpcs://127.0.0.1:P" over TLS)
        self.http_address = http_address  # "http://127.0.0.1:Q" (https://), the HTTP base URL
        self.control_context = None
        if tls:  # the control API is served over TLS too; a harness need not verify it
            import ssl
            self.control_context = ssl._create_unverified_context()
        self.secret = secret
        self.log_path = log_path

    def endpoint(self, protocol: str, timeout_ms: int = 2000, supplier_id: str = "sim",
                 secret: bytes | None = None) -> Endpoint:
        """An Endpoint of this supplier for a connector (another secret: to sign wrongly)."""
        address = self.grpc_address if protocol == "grpc" else self.http_address
        return Endpoint(supplier_id=supplier_id, protocol=protocol, address=address,
                        timeout_ms=timeout_ms, secret=self.secret if secret is None else secret)

    def _control(self, method: str, path: str, document: dict | None = None) -> dict:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(self.http_address + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=control_timeout_seconds,
                                        context=self.control_context) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            raise SupplierError(f"{method} {path}: {error.code} {error.read()!r}") from None

    def state(self) -> dict:
        """GET /control/state: top-ups performed per request id, purchases, callbacks sent."""
        return self._control("GET", "/control/state")

    def configure(self, **behaviour) -> dict:
        return self._control("POST", "/control/config", behaviour)

    def reset(self) -> dict:
        return self._control("POST", "/control/reset", {})

    def log(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _read_ready_line(process: subprocess.Popen) -> str:
    """The first stdout line, or "" when the process ends or the start timeout passes."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()),
                              daemon=True)
    reader.start()
    reader.join(start_timeout_seconds)
    return line[0] if line else ""


@contextlib.contextmanager
def simulated_supplier(tls: tuple[str, str] | None = None, **behaviour):
    """A running simulated supplier with `behaviour` (simulated_supplier.Behaviour's fields);
    tls = (certificate chain file, key file) serves both wires over TLS."""
    secret = secrets.token_bytes(32)
    arguments = [sys.executable, "-m", "kamicore.connectors.simulator",
                 "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                 "--secret-hex", secret.hex()]
    if tls is not None:
        arguments += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    for name, value in behaviour.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            arguments.append(flag)
        elif name == "products":
            arguments += [flag, ",".join(value)]
        elif value is not False and value is not None:
            arguments += [flag, str(value)]
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("KAMICORE_")}
    environment["PYTHONUNBUFFERED"] = "1"
    with tempfile.NamedTemporaryFile("w+", prefix="supplier-", suffix=".log",
                                     delete=False) as log:
        process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=log, text=True,
                                   env=environment)
    handle = None
    try:
        ready = _read_ready_line(process)
        if not ready.startswith("ready "):
            process.kill()
            process.wait()
            with open(log.name, errors="replace") as text:
                raise SupplierError(f"the simulated supplier did not start: {text.read()}")
        fields = dict(part.split("=", 1) for part in ready.split()[1:])
        grpc_scheme, http_scheme = ("grpcs://", "https://") if tls else ("", "http://")
        handle = SimulatedSupplierProcess(process, grpc_scheme + fields["grpc"],
                                          http_scheme + fields["http"], secret, log.name,
                                          tls is not None)
        yield handle
    finally:
        if handle is not None:
            handle.stop()
        elif process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        os.unlink(log.name)
