"""The operator CLI, run as a real process the way an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys


def kamicore(data_dir, *args, check=True):
    return subprocess.run([sys.executable, "-m", "kamicore.cli", "--data-dir", str(data_dir),
                           *args], capture_output=True, text=True, check=check)


def test_import_file_twice_skips_duplicates_and_reports_bad_lines(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text("AAAA-0001\nBBBB-0002\n\nbad\x01code\naaaa 0001\n" + "X" * 200 + "\n")
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
    result = kamicore(tmp_path / "var", "import", str(codes), "--sku", "s", "--batch", "b",
                      "--valid-until", "2099-01-01")
    assert json.loads(result.stdout)["imported"] == 2
    stock = json.loads(kamicore(tmp_path / "var", "stock").stdout)
    assert stock["s"]["soonest_valid_until_ms"] == 4070908800000


def test_bad_arguments_name_the_field(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text("A-1\n")
    result = kamicore(tmp_path / "var", "import", str(codes), "--sku", "s", "--batch", "b",
                      "--valid-until", "next tuesday", check=False)
    assert result.returncode == 2 and "--valid-until" in result.stderr


def test_audit_verify_and_check_pass_on_a_sound_dir(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text("A-1\nB-2\n")
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
    kamicore(tmp_path / "var", "import", str(codes), "--sku", "s", "--batch", "b")
    kamicore(tmp_path / "var", "backup", str(tmp_path / "backup"))
    failed = kamicore(tmp_path / "other", "restore", str(tmp_path / "backup"), check=False)
    assert failed.returncode == 1 and "master key" in failed.stderr
    assert not (tmp_path / "other" / "data.mdb").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "master.key").write_text("11" * 32 + "\n")  # the wrong key
    wrong = kamicore(tmp_path / "other", "restore", str(tmp_path / "backup"), check=False)
    assert wrong.returncode != 0 and "DecryptionError" in wrong.stderr
