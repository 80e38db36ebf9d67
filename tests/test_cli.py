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
