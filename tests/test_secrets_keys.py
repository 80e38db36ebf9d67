"""What the engine promises about master keys and their rotation (shared/DESIGN.md, "Secrets"),
checked from outside: rotating, swapping or misconfiguring a master key never loses a code (nor
does a full store), and the wrong key fails loudly (DecryptionError), never with a wrong
plaintext. What is stored, and how tampering shows: tests/test_secrets_at_rest.py.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import secrets
import subprocess
import sys

import pytest
from kamicore.engine import Engine
from kamicore.limits import map_size_bytes_min
from kamicore.keyring import DecryptionError
from kamicore.statuses import ImportStatus, VerifyStatus

from .secrets_support import (
    KEY_FILE,
    MASTER_KEY_ENV,
    SKU,
    file_mode,
    normalised,
    random_codes,
    reopen,
    sell,
)

# -- key rotation and master keys -----------------------------------------------------------

def test_rotate_keys_keeps_every_code_readable(engine, clock, implementation, tmp_path):
    data_dir = tmp_path / "data"
    key_file = data_dir / KEY_FILE
    codes = random_codes(90, random.Random(5))
    for number in range(3):
        engine.import_codes(SKU, f"batch-{number}", codes[number * 30:(number + 1) * 30])
    sell(engine, "order-1", 10)
    before = engine.order("order-1", reveal=True).plaintexts
    old_key = key_file.read_text().split()[0]

    assert engine.rotate_keys() == 3
    assert engine.check() == []
    assert engine.order("order-1", reveal=True).plaintexts == before
    assert [r.status for r in engine.verify(codes)] == [VerifyStatus.FOUND] * 90
    keys_now = key_file.read_text().split()
    assert keys_now[0] != old_key  # a new master key is current
    assert file_mode(key_file) == 0o600
    # imports after the rotation use the new key
    assert engine.import_codes(SKU, "batch-after", ["AFTER-ROTATION-0001"]).imported == 1
    assert engine.rotate_keys(secrets.token_bytes(32)) == 4
    engine.close()

    with reopen(data_dir, clock, implementation) as reopened:
        assert reopened.check() == []
        assert reopened.order("order-1", reveal=True).plaintexts == before
        assert reopened.verify(["after-rotation-0001"])[0].status == VerifyStatus.FOUND
        assert [r.status for r in reopened.verify(codes)] == [VerifyStatus.FOUND] * 90
    assert file_mode(key_file) == 0o600
    assert sorted(p.name for p in data_dir.iterdir()) == ["data.mdb", "lock.mdb", KEY_FILE]


def test_master_key_from_environment(tmp_path, clock, implementation, monkeypatch):
    data_dir = tmp_path / "data"
    key = secrets.token_bytes(32)
    monkeypatch.setenv(MASTER_KEY_ENV, key.hex())
    with Engine(data_dir, clock=clock, implementation=implementation) as opened:
        opened.import_codes(SKU, "batch-1", ["ENV-KEY-CODE-0001", "ENV-KEY-CODE-0002"])
        sell(opened, "order-1", 1)
    assert sorted(p.name for p in data_dir.iterdir()) == ["data.mdb", "lock.mdb"]

    with Engine(data_dir, clock=clock, implementation=implementation) as opened:
        assert opened.check() == []
        assert opened.order("order-1", reveal=True).plaintexts == ["ENV-KEY-CODE-0001"]

    # another master key opens nothing, and says so
    monkeypatch.setenv(MASTER_KEY_ENV, secrets.token_bytes(32).hex())
    with pytest.raises(DecryptionError):
        Engine(data_dir, clock=clock, implementation=implementation)
    # so does a key file holding another key (no environment key)
    monkeypatch.delenv(MASTER_KEY_ENV)
    other_key_file = tmp_path / "other.key"
    other_key_file.write_text(secrets.token_bytes(32).hex() + "\n")
    with pytest.raises(DecryptionError):
        Engine(data_dir, clock=clock, implementation=implementation,
               master_key_file=str(other_key_file))
    gc.collect()  # the failed opens' environments

    # the failed opens harmed nothing: the right key still opens everything
    monkeypatch.setenv(MASTER_KEY_ENV, key.hex())
    with Engine(data_dir, clock=clock, implementation=implementation) as opened:
        assert opened.check() == []
        assert opened.verify(["env-key-code-0002"])[0].status == VerifyStatus.FOUND
    assert not (data_dir / KEY_FILE).exists()


def test_rotation_to_a_given_key_with_environment_keys(tmp_path, clock, implementation,
                                                        monkeypatch):
    data_dir = tmp_path / "data"
    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    monkeypatch.setenv(MASTER_KEY_ENV, old_key.hex())
    with Engine(data_dir, clock=clock, implementation=implementation) as opened:
        opened.import_codes(SKU, "batch-1", ["ROTATE-ME-0001", "ROTATE-ME-0002"])
        assert opened.rotate_keys(new_key) == 1
        assert opened.check() == []
    assert sorted(p.name for p in data_dir.iterdir()) == ["data.mdb", "lock.mdb"]
    monkeypatch.setenv(MASTER_KEY_ENV, new_key.hex())
    with Engine(data_dir, clock=clock, implementation=implementation) as opened:
        assert opened.check() == []
        assert opened.verify(["rotate-me-0002"])[0].status == VerifyStatus.FOUND
    monkeypatch.setenv(MASTER_KEY_ENV, old_key.hex())
    with pytest.raises(DecryptionError):
        Engine(data_dir, clock=clock, implementation=implementation)
    gc.collect()


def test_rotation_without_a_key_never_loses_an_environment_keyed_store(
        tmp_path, clock, implementation, monkeypatch):
    data_dir = tmp_path / "data"
    key = secrets.token_bytes(32)
    monkeypatch.setenv(MASTER_KEY_ENV, key.hex())
    with Engine(data_dir, clock=clock, implementation=implementation) as opened:
        opened.import_codes(SKU, "batch-1", ["LOST-KEY-CODE-0001"])
        with contextlib.suppress(Exception):  # any refusal will do
            opened.rotate_keys()  # refusing is fine; losing the store is not
    # the operator still has only the key they configured
    with Engine(data_dir, clock=clock, implementation=implementation) as opened:
        assert opened.check() == []
        assert opened.verify(["LOST-KEY-CODE-0001"])[0].status == VerifyStatus.FOUND


ROTATE_IN_ANOTHER_PROCESS = """
import sys
from kamicore.engine import Engine
with Engine(sys.argv[1]) as engine:
    print(engine.rotate_keys())
"""


def test_rotation_by_another_process_keeps_codes_readable(tmp_path, monkeypatch):
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    data_dir = tmp_path / "data"
    with Engine(data_dir) as setup:
        setup.import_codes(SKU, "batch-1", ["SHARED-DIR-0001", "SHARED-DIR-0002"])
    with Engine(data_dir) as engine:
        done = subprocess.run([sys.executable, "-c", ROTATE_IN_ANOTHER_PROCESS, str(data_dir)],
                              capture_output=True, text=True, timeout=60, check=False,
                              env={k: v for k, v in os.environ.items() if k != MASTER_KEY_ENV})
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["1"]
        assert engine.verify(["shared-dir-0001"])[0].status == VerifyStatus.FOUND
        assert engine.check() == []


def test_codes_imported_after_a_full_store_survive_a_restart(tmp_path, clock, implementation,
                                                             monkeypatch):
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    data_dir = tmp_path / "data"
    rng = random.Random(99)
    with Engine(data_dir, clock=clock, implementation=implementation,
                map_size_bytes=map_size_bytes_min) as opened:
        too_many = opened.import_codes(SKU, "batch-big", random_codes(12_000, rng))
        assert too_many.status == ImportStatus.STORAGE_FULL
        # the operator splits the batch and tries again
        retry = random_codes(100, rng)
        assert opened.import_codes(SKU, "batch-big", retry).imported == 100
        assert opened.check() == []
    with Engine(data_dir, clock=clock, implementation=implementation,
                map_size_bytes=map_size_bytes_min) as reopened:
        assert reopened.check() == []
        assert reopened.verify(retry[:1])[0].code.masked.endswith(normalised(retry[0])[-4:])
