"""Server configuration: defaults that need no file, a TOML file, then KAMICORE_* variables."""

from __future__ import annotations

import dataclasses
import os
import tomllib

from . import limits

CONFIG_ENV = "KAMICORE_CONFIG"
ENV_PREFIX = "KAMICORE_"
TARGET_ENV = "KAMICORE_TARGET"  # where client commands (call, demo) reach the server
WILDCARD_HOSTS = {"", "0.0.0.0", "[::]", "::"}  # listen on every interface


@dataclasses.dataclass
class Config:
    data_dir: str = "var"
    listen: str = "127.0.0.1:50051"  # host:port every worker binds (SO_REUSEPORT)
    metrics_listen: str = "127.0.0.1:9464"  # Prometheus scrape endpoint; "" disables it
    workers: int = 0  # 0: the CPU count
    # host:port of the HTTP listener for supplier callbacks (POST /v1/callbacks/<supplier id>),
    # served by the dispatcher process; "" disables it (gRPC SupplierCallback still works)
    callback_listen: str = ""
    # the base URL suppliers reach that listener at (behind a proxy, say); default
    # http://<callback_listen>. Sent with each TopUp as <base>/v1/callbacks/<supplier id>
    callback_url: str = ""
    # how often the dispatcher runs its tasks (top-up recovery and follow-ups, replenishment)
    dispatcher_interval_seconds: float = 1.0
    # a PENDING top-up no callback settled is asked about (QueryTopUp) after this, and again
    topup_follow_up_seconds: float = limits.topup_follow_up_seconds_default
    # webhooks (kamicore.runtime.webhooks): a failed POST is tried again after this, doubling
    # (with jitter) up to limits.webhook_backoff_seconds_max
    webhook_backoff_seconds: float = limits.webhook_backoff_seconds_default
    # one POST may take this long (connecting included) before it counts as failed
    webhook_timeout_seconds: float = limits.webhook_request_seconds_max
    # outbox events older than this are pruned, unless an enabled endpoint still needs them
    webhook_retention_seconds: float = limits.webhook_retention_seconds_default
    tls_cert: str = ""  # PEM server certificate chain; TLS when set
    tls_key: str = ""  # PEM private key of tls_cert
    tls_client_ca: str = ""  # PEM CA bundle; when set, clients must present a certificate (mTLS)
    hold_seconds_default: int = 900  # CreateOrder hold when the request leaves it 0
    sweep_interval_seconds: float = 1.0  # how often expired holds go back to stock
    in_flight_rpcs_max: int = limits.in_flight_rpcs_default  # per worker; more: RESOURCE_EXHAUSTED
    key_in_flight_rpcs_max: int = 0  # per key and worker; 0: a share of in_flight_rpcs_max
    key_streams_max: int = limits.key_streams_default  # open streams per key and worker
    stream_idle_seconds: float = limits.stream_idle_seconds_default  # client silent: UNAVAILABLE
    # a WatchEvents write that cannot progress this long (the watcher stopped reading) ends it
    watch_write_timeout_seconds: float = limits.watch_write_timeout_seconds_default
    message_bytes_max: int = limits.reply_bytes_max  # largest request or reply; not below it
    grace_seconds: float = 10.0  # on SIGTERM, how long in-flight calls may take to finish
    map_size_bytes: int = limits.map_size_bytes_default  # address space for the data file
    # the master key file; default <data_dir>/master.key, where a copy of the whole folder
    # decrypts every code: point it off the data volume (KAMICORE_MASTER_KEY overrides it)
    master_key_file: str = ""
    # the [risk] table of the TOML file: a rule set (kamicore.domain.risk_rules) stored as the
    # next version at start unless it is the one in force; None: keep the stored rules
    risk_rules: dict | None = None

    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def key_in_flight_limit(self) -> int:
        """How many calls one key may have in flight in one worker."""
        if self.key_in_flight_rpcs_max > 0:
            return self.key_in_flight_rpcs_max
        return max(1, int(self.in_flight_rpcs_max * limits.key_in_flight_fraction_default))

    def callback_base(self) -> str:
        """The URL suppliers call back at ("" when there is no listener)."""
        if self.callback_url:
            return self.callback_url.rstrip("/")
        return f"http://{client_address(self.callback_listen)}" if self.callback_listen else ""

    def client_target(self) -> str:
        """Where a client on this machine reaches the server."""
        return client_address(self.listen)


def client_address(listen: str) -> str:
    """Where a client on this machine reaches a host:port listened on (every interface: the
    loopback)."""
    host, _, port = listen.rpartition(":")
    if host in WILDCARD_HOSTS:
        host = "[::1]" if host in ("[::]", "::") else "127.0.0.1"
    return f"{host}:{port}"


def _check_address(value: str, name: str) -> None:
    """host:port, the port a number (0-65535)."""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535 or host.count(":") and not (
            host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{name}: {value!r} must be host:port, e.g. 127.0.0.1:50051")


def _coerce(field: dataclasses.Field, value, source: str):
    kind = type(field.default)
    try:
        if kind is bool:
            return str(value).lower() in ("1", "true", "yes", "on")
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {field.name} must be {kind.__name__}") from None


def load(path: str | None = None, overrides: dict | None = None) -> Config:
    """Defaults, then the TOML file (`path` or $KAMICORE_CONFIG), then KAMICORE_<FIELD>
    variables, then `overrides` (command-line flags that were given)."""
    config = Config()
    fields = {field.name: field for field in dataclasses.fields(Config)}
    path = path or os.environ.get(CONFIG_ENV)
    if path:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
        settings = dict(table.get("kamicore", table))
        risk = settings.pop("risk", table.get("risk"))
        if risk is not None:
            if not isinstance(risk, dict):
                raise ValueError(f"{path}: risk must be a table of risk rules")
            config.risk_rules = risk
        for name, value in settings.items():
            if name not in fields or name == "risk_rules":
                raise ValueError(f"{path}: unknown setting {name!r}")
            setattr(config, name, _coerce(fields[name], value, path))
    for name, field in fields.items():
        value = os.environ.get(ENV_PREFIX + name.upper()) if name != "risk_rules" else None
        if value is not None:
            setattr(config, name, _coerce(field, value, ENV_PREFIX + name.upper()))
    for name, value in (overrides or {}).items():
        if value is not None:
            setattr(config, name, _coerce(fields[name], value, f"--{name.replace('_', '-')}"))
    _check_address(config.listen, "listen")
    if config.metrics_listen:
        _check_address(config.metrics_listen, "metrics_listen")
    if config.callback_listen:
        _check_address(config.callback_listen, "callback_listen")
    if config.tls_key and not config.tls_cert or config.tls_client_ca and not config.tls_cert:
        raise ValueError("tls_key and tls_client_ca need tls_cert")
    if config.message_bytes_max < limits.reply_bytes_max:
        raise ValueError(f"message_bytes_max must be at least {limits.reply_bytes_max}: the "
                         "largest replies need it")
    _check_fair_use(config)
    return config


def _check_fair_use(config: Config) -> None:
    for name in ("in_flight_rpcs_max", "key_streams_max", "stream_idle_seconds",
                 "watch_write_timeout_seconds", "dispatcher_interval_seconds",
                 "topup_follow_up_seconds", "webhook_backoff_seconds", "webhook_timeout_seconds",
                 "webhook_retention_seconds"):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be more than 0")
    if not 0 <= config.key_in_flight_rpcs_max <= config.in_flight_rpcs_max:
        raise ValueError("key_in_flight_rpcs_max must be between 0 (the default share) and "
                         "in_flight_rpcs_max")
