"""What every process that opens a data dir checks first, so a mistake is refused with one
line instead of half-starting: the data dir is not served twice, the addresses are free, the
folder really holds kamicore data when a command only reads it, and the master key that opens
it is where the settings say."""

from __future__ import annotations

import errno
import logging
import fcntl
import os
import socket
from pathlib import Path

from .. import keyring
from ..config import Config
from ..engine import Engine

DATA_FILE_NAME = "data.mdb"
SERVE_LOCK_FILE_NAME = "serve.lock"  # held (flock) by the serving supervisor, holds its pid


class StartupError(Exception):
    """A one-line reason why a command or the server cannot start; nothing was changed."""


class DataDirLock:
    """An exclusive flock on <data dir>/serve.lock for the life of the process that serves
    the dir (the kernel drops it when that process dies, however it dies). A second server on
    the same dir, or a restore into it, is refused while it is held."""

    def __init__(self, data_dir: str | os.PathLike):
        self.path = Path(data_dir) / SERVE_LOCK_FILE_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise StartupError(f"{Path(data_dir)} is already served by a running kamicore "
                               f"serve (pid {holder}); stop that one first") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the lock; the file stays, unlocked
            self._fd = -1

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def check_address_free(address: str, setting: str) -> None:
    """Refuse an address another process already listens on. The bind test goes without
    SO_REUSEPORT, which the workers use to share their port: a server already on it (kamicore
    or not) makes this bind fail, where a worker's bind would silently share the port."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or None
    try:
        candidates = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                        flags=socket.AI_PASSIVE)
    except (socket.gaierror, ValueError) as error:
        raise StartupError(f"{setting} {address}: cannot be resolved ({error})") from None
    problems = []
    for family, kind, protocol, _, sockaddr in candidates:
        with socket.socket(family, kind, protocol) as probe:
            # TIME_WAIT connections of a server that just stopped do not count as in use
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise StartupError(f"{setting} {address} is already in use (another "
                                       f"server?); choose another address with {setting}"
                                       ) from None
                problems.append(error.strerror)
                continue
    if problems and len(problems) == len(candidates):
        raise StartupError(f"{setting} {address}: cannot listen there ({problems[0]})")


def check_tls_files(config: Config) -> None:
    """Every configured TLS file is there and readable (a worker would fail on each start)."""
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(config, name)
        if path and not os.access(path, os.R_OK):
            reason = "cannot be read" if Path(path).is_file() else "no such file"
            raise StartupError(f"{name} {path}: {reason}")


def has_data(config: Config) -> bool:
    return (Path(config.data_dir) / DATA_FILE_NAME).exists()


def master_key_path(config: Config) -> Path | None:
    """Where the master key file is (None: it comes from KAMICORE_MASTER_KEY)."""
    if os.environ.get(keyring.MASTER_KEY_ENV):
        return None
    if config.master_key_file:
        return Path(config.master_key_file)
    return Path(config.data_dir) / keyring.MASTER_KEY_FILE_NAME


def check_data_dir(config: Config, *, create: bool) -> str | None:
    """Refuse to open a folder without kamicore data unless `create`, and data whose master key
    file is missing (a new key would open none of its codes). Returns a notice to show when
    opening will write a new master key, None otherwise."""
    data_dir = Path(config.data_dir)
    key_path = master_key_path(config)
    if not has_data(config):
        if not create:
            raise StartupError(f"{data_dir} holds no kamicore data (no {DATA_FILE_NAME}); "
                               "point --data-dir or KAMICORE_DATA_DIR at the server's data dir")
    elif key_path is not None and not key_path.exists():
        raise StartupError(f"{data_dir} holds data but its master key {key_path} is missing: "
                           "put the key there, or set master_key_file (KAMICORE_MASTER_KEY_FILE) "
                           f"to where it is, or {keyring.MASTER_KEY_ENV}")
    if key_path is None or key_path.exists():
        return None
    if key_path.resolve().parent == data_dir.resolve():
        return (f"a new master key was written to {key_path}, beside the data: a copy of the "
                "whole folder decrypts every code. Move it off the data volume and set "
                "master_key_file (or KAMICORE_MASTER_KEY_FILE) to its new path; back it up "
                "apart from the data (README: Secrets)")
    return (f"a new master key was written to {key_path}; back it up apart from the data: "
            "without it no code can be decrypted")


def open_engine(config: Config, *, create: bool = False) -> tuple[Engine, str | None]:
    """The data dir's engine with the configured map size and master key, after
    check_data_dir; and the new-key notice, if opening wrote a new master key."""
    notice = check_data_dir(config, create=create)
    try:
        engine = Engine(config.data_dir, map_size_bytes=config.map_size_bytes,
                        master_key_file=config.master_key_file or None)
    except keyring.DecryptionError as error:
        raise StartupError(f"the master key does not open {config.data_dir} "
                           f"(DecryptionError: {error})") from None
    except ValueError as error:  # a malformed key file or KAMICORE_MASTER_KEY, a bad map size
        raise StartupError(str(error)) from None
    return engine, notice


def apply_risk_rules(engine: Engine, rule_set: dict) -> None:
    """The settings file's [risk] rules, in force before the first worker serves; a bad rule is
    refused with one line naming it."""
    from ..domain.risk import Risk, RiskStore
    from ..engine import InvalidArgument
    try:
        if RiskStore(engine, Risk(engine.keys.lookup_key)).apply_config(rule_set):
            logging.getLogger("kamicore").info("risk rules from the settings file are in force")
    except InvalidArgument as error:
        raise StartupError(f"settings [risk] {error}") from None
