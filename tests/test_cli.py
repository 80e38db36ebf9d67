"""The operator CLI, run as a real process the way an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .server_harness import _clean_environment


def kamicore(data_dir, *args, check=True, env=None):
    return subprocess.run([sys.executable, "-m", "kamicore.cli", "--data-dir", str(data_dir),
                           *args], capture_output=True, text=True, check=check,
                          env={**_clean_environment(), **(env or {})})


def create_sku(data_dir, sku_id, env=None):
    kamicore(data_dir, "sku", "create", sku_id, "--name", sku_id, "--face-value", "50.00",
             "--price", "web=48.50", env=env)


def test_import_file_twice_skips_duplicates_and_reports_bad_lines(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text("AAAA-0001\nBBBB-0002\n\nbad\x01code\naaaa 0001\n" + "X" * 200 + "\n")
    create_sku(tmp_path / "var", "steam-50")
    first = kamicore(tmp_path / "var", "import", str(codes), "--sku", "steam-50",
                     "--batch", "2026-11")
    assert json.loads(first.stdout) == {"imported": 2, "duplicates": 1, "rejected": 2}
    assert "line 4: CONTROL_CHARACTER" in first.stderr
    assert "line 6: TOO_LONG" in first.stderr
    again = kamicore(tmp_path / "var", "import", str(codes), "--sku", "steam-50",
                     "--batch", "2026-11")
    assert json.loads(again.stdout)["imported"] == 0
    stock = json.loads(kamicore(tmp_path / "var", "stock", "steam-50").stdout)
    assert stock["steam-50"]["counts"]["AVAILABLE"] == 2
    assert stock["steam-50"]["sellable"] == 2
    # nothing the operator sees carries a plaintext code
    for output in (first.stdout, first.stderr, again.stdout, again.stderr):
        assert "AAAA" not in output and "BBBB" not in output


def test_csv_import_with_header_and_validity(tmp_path):
    codes = tmp_path / "codes.csv"
    codes.write_text("code,pin\nCSV-0001,1234\nCSV-0002,5678\n")
    create_sku(tmp_path / "var", "s")
    result = kamicore(tmp_path / "var", "import", str(codes), "--sku", "s", "--batch", "b",
                      "--valid-until", "2099-01-01")
    assert json.loads(result.stdout)["imported"] == 2
    stock = json.loads(kamicore(tmp_path / "var", "stock").stdout)
    assert stock["s"]["soonest_valid_until_ms"] == 4070908800000


def test_bad_arguments_name_the_field(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text("A-1\n")
    create_sku(tmp_path / "var", "s")
    result = kamicore(tmp_path / "var", "import", str(codes), "--sku", "s", "--batch", "b",
                      "--valid-until", "next tuesday", check=False)
    assert result.returncode == 2 and "--valid-until" in result.stderr


def test_audit_verify_and_check_pass_on_a_sound_dir(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text("A-1\nB-2\n")
    create_sku(tmp_path / "var", "s")
    kamicore(tmp_path / "var", "import", str(codes), "--sku", "s", "--batch", "b")
    audit = json.loads(kamicore(tmp_path / "var", "audit", "verify").stdout)
    assert audit["ok"] and audit["events"] == 2
    assert json.loads(kamicore(tmp_path / "var", "check").stdout) == {"ok": True, "problems": 0}
    rotated = json.loads(kamicore(tmp_path / "var", "rotate-keys").stdout)
    assert rotated == {"rewrapped_batches": 1}
    assert json.loads(kamicore(tmp_path / "var", "check").stdout)["ok"]


def test_backup_while_writing_then_restore_elsewhere(tmp_path):
    """A backup taken while another process keeps writing is a consistent snapshot: restored
    next to the master key, every check passes and the counts are a whole number of imports."""
    import shutil
    import threading

    from kamicore.engine import Engine
    source = tmp_path / "var"
    with Engine(source) as engine:
        engine.import_codes("s", "b0", [f"SEED-{n:04d}" for n in range(100)])
        stop = threading.Event()

        def keep_importing():
            batch = 1
            while not stop.is_set():
                engine.import_codes("s", "b0", [f"MORE-{batch:04d}-{n:02d}" for n in range(10)])
                batch += 1

        writer = threading.Thread(target=keep_importing)
        writer.start()
        try:
            result = kamicore(source, "backup", str(tmp_path / "backup"))
        finally:
            stop.set()
            writer.join()
    assert json.loads(result.stdout)["bytes"] > 0
    target = tmp_path / "restored"
    target.mkdir()
    shutil.copy(source / "master.key", target / "master.key")
    restored = json.loads(kamicore(target, "restore", str(tmp_path / "backup")).stdout)
    assert restored["problems"] == []
    stock = json.loads(kamicore(target, "stock", "s").stdout)["s"]["counts"]["AVAILABLE"]
    assert stock >= 100 and (stock - 100) % 10 == 0
    refused = kamicore(target, "restore", str(tmp_path / "backup"), check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr


def test_restore_without_the_master_key_fails_loudly(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text("A-1\n")
    create_sku(tmp_path / "var", "s")
    kamicore(tmp_path / "var", "import", str(codes), "--sku", "s", "--batch", "b")
    kamicore(tmp_path / "var", "backup", str(tmp_path / "backup"))
    failed = kamicore(tmp_path / "other", "restore", str(tmp_path / "backup"), check=False)
    assert failed.returncode == 1 and "master key" in failed.stderr
    assert not (tmp_path / "other" / "data.mdb").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "master.key").write_text("11" * 32 + "\n")  # the wrong key
    wrong = kamicore(tmp_path / "other", "restore", str(tmp_path / "backup"), check=False)
    assert wrong.returncode != 0 and "DecryptionError" in wrong.stderr


def test_import_applies_the_api_rules_a_sku_outside_the_catalog_is_refused(tmp_path):
    data = tmp_path / "var"
    create_sku(data, "steam-50")
    codes = tmp_path / "codes.txt"
    codes.write_text("AAAA-0001\nBBBB-0002\n")
    refused = kamicore(data, "import", str(codes), "--sku", "steam-100", "--batch", "b",
                       check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "error: --sku steam-100: IMPORT_STATUS_SKU_NOT_FOUND (create it first: kamicore sku "
        "create)"]
    stock = json.loads(kamicore(data, "stock").stdout)
    assert "steam-100" not in stock and stock["steam-50"]["sellable"] == 0
    imported = kamicore(data, "import", str(codes), "--sku", "steam-50", "--batch", "b")
    assert json.loads(imported.stdout)["imported"] == 2


READ_COMMANDS = [("stock",), ("order", "show", "o-1"), ("audit", "verify"), ("check",),
                 ("keys", "list"), ("sku", "list"), ("rotate-keys",), ("backup", "BACKUP"),
                 ("import", "CODES", "--sku", "s", "--batch", "b")]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_a_folder_without_kamicore_data_is_named_and_left_alone(tmp_path, command):
    """No new data dir and no new master key where an operator merely mistyped a path."""
    folder = tmp_path / "home"
    folder.mkdir()
    codes = tmp_path / "codes.txt"
    codes.write_text("A-1\n")
    args = [{"BACKUP": str(tmp_path / "backup"), "CODES": str(codes)}.get(arg, arg)
            for arg in command]
    result = kamicore(folder, *args, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {folder} holds no kamicore data (no data.mdb); point --data-dir or "
        "KAMICORE_DATA_DIR at the server's data dir"]
    assert list(folder.iterdir()) == []
    assert not kamicore(tmp_path / "nowhere", *args, check=False).returncode == 0
    assert not (tmp_path / "nowhere").exists()


def test_order_show_uses_the_api_state_names_and_masks_codes(tmp_path, monkeypatch):
    from kamicore.engine import Engine
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    data = tmp_path / "var"
    create_sku(data, "s")
    with Engine(data) as engine:
        engine.import_codes("s", "b", ["ABCDEFGH-12345678", "AB-123"])
        engine.reserve([("order-1", [("s", 2)], 900)])
        engine.confirm(["order-1"])
    shown = json.loads(kamicore(data, "order", "show", "order-1").stdout)
    assert shown["state"] == "ORDER_STATE_PAID"
    assert {code["state"] for code in shown["codes"]} == {"CODE_STATE_SOLD"}
    # at most the last 4 characters, and never more than a quarter of the code
    assert sorted(code["code"] for code in shown["codes"]) == ["*************5678", "*****3"]


def test_the_cli_opens_the_data_dir_with_the_configured_map_size(tmp_path):
    data = tmp_path / "var"
    small = {"KAMICORE_MAP_SIZE_BYTES": str(2**20)}
    create_sku(data, "s", env=small)
    codes = tmp_path / "codes.txt"
    codes.write_text("".join(f"CODE-{number:08d}\n" for number in range(6000)))
    full = kamicore(data, "import", str(codes), "--sku", "s", "--batch", "b", env=small,
                    check=False)
    assert full.returncode == 1 and "IMPORT_STATUS_STORAGE_FULL" in full.stderr
    assert (data / "data.mdb").stat().st_size <= 2**20
    assert "Traceback" not in full.stderr


def test_the_master_key_can_live_outside_the_data_dir(tmp_path):
    data, key_file = tmp_path / "var", tmp_path / "keys" / "master.key"
    key_file.parent.mkdir()
    outside = {"KAMICORE_MASTER_KEY_FILE": str(key_file)}
    created = kamicore(data, "sku", "create", "s", "--name", "S", "--face-value", "1.00",
                       env=outside)
    assert key_file.exists() and not (data / "master.key").exists()
    assert f"a new master key was written to {key_file}" in created.stderr
    codes = tmp_path / "codes.txt"
    codes.write_text("A-1\nB-2\n")
    kamicore(data, "import", str(codes), "--sku", "s", "--batch", "b", env=outside)
    assert json.loads(kamicore(data, "check", env=outside).stdout)["ok"]
    # without the setting the codes cannot open: said so, and no new key is made beside them
    lost = kamicore(data, "stock", check=False)
    assert lost.returncode == 1 and "master key" in lost.stderr and "missing" in lost.stderr
    assert not (data / "master.key").exists()


def test_a_new_data_dir_says_its_master_key_sits_beside_the_data(tmp_path):
    data = tmp_path / "var"
    created = kamicore(data, "sku", "create", "s", "--name", "S", "--face-value", "1.00")
    assert f"{data / 'master.key'}, beside the data" in created.stderr
    assert "master_key_file" in created.stderr
    again = kamicore(data, "sku", "create", "t", "--name", "T", "--face-value", "1.00")
    assert "master key" not in again.stderr  # first start only


def test_sku_create_sets_replenishment_and_buying_on_payment(tmp_path):
    created = kamicore(tmp_path / "var", "sku", "create", "s", "--name", "S", "--face-value",
                       "1.00", "--low-stock", "10", "--replenish", "200")
    assert json.loads(created.stdout)["sku"]["replenishQuantity"] == 200
    bought = kamicore(tmp_path / "var", "sku", "create", "t", "--name", "T", "--face-value",
                      "1.00", "--buy-on-payment")
    assert json.loads(bought.stdout)["sku"]["buyOnPayment"] is True
    refused = kamicore(tmp_path / "var", "sku", "create", "u", "--name", "U", "--face-value",
                       "1.00", "--replenish", "5", check=False)
    assert refused.returncode != 0 and "sku.replenish_quantity" in refused.stderr


def test_version():
    from importlib.metadata import version
    result = subprocess.run([sys.executable, "-m", "kamicore.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"kamicore {version('kamicore')}"


def test_demo_prints_the_address_it_uses_and_is_safe_to_run_twice(tmp_path):
    from .server_harness import free_port
    data, port, other = tmp_path / "var", free_port(), free_port()
    settings = {"KAMICORE_LISTEN": f"0.0.0.0:{port}", "KAMICORE_METRICS_LISTEN": ":9999"}
    first = kamicore(data, "demo", env=settings)
    assert f"call --target 127.0.0.1:{port} --key" in first.stdout
    assert f"Server: 127.0.0.1:{port} (nothing answers there yet" in first.stdout
    assert "curl -s http://127.0.0.1:9999/metrics" in first.stdout
    assert "beside the data" in first.stderr  # its first start wrote the master key
    second = kamicore(data, "demo", env={**settings, "KAMICORE_TARGET": f"127.0.0.1:{other}"})
    assert f"call --target 127.0.0.1:{other} --key" in second.stdout
    assert "already there" in second.stdout
    stock = json.loads(kamicore(data, "stock").stdout)
    assert {sku: report["sellable"] for sku, report in stock.items()} == {
        "demo-steam-50": 100, "demo-netflix-1m": 100, "demo-phone-30": 0}  # a top-up SKU
    simulators = [[line for line in run.stdout.splitlines() if "connectors.simulator" in line]
                  for run in (first, second)]
    assert len(simulators[0]) == 1 and simulators[0] == simulators[1]  # its secret is kept
    keys = [json.loads(run.stdout[:run.stdout.index("\n}\n") + 3])["keys"]
            for run in (first, second)]
    assert keys[0]["storefront"] != keys[1]["storefront"]  # printed once each, both work
    tours = [line for run in (first, second) for line in run.stdout.splitlines()
             if "idempotencyKey" in line]
    assert len(tours) == 4 and len(set(tours)) == 4  # a second tour orders anew, no replay


def test_a_file_longer_than_a_commit_group_names_each_rejected_line(tmp_path):
    """The file goes through the API's import stream in groups; rejected rows still come back
    as the file's line numbers, blank lines counted."""
    lines = ["" if number % 777 == 0 else f"BAD\x01{number}" if number % 1000 == 0
             else f"CODE-{number:06d}" for number in range(1, 25_001)]
    codes = tmp_path / "codes.txt"
    codes.write_text("\n".join(lines) + "\n")
    data = tmp_path / "var"
    create_sku(data, "s")
    result = kamicore(data, "import", str(codes), "--sku", "s", "--batch", "b")
    assert json.loads(result.stdout) == {"imported": 25_000 - 25 - 32, "duplicates": 0,
                                         "rejected": 25}
    assert result.stderr.splitlines() == [f"line {number}: CONTROL_CHARACTER"
                                          for number in range(1000, 25_001, 1000)]
