"""Every mistake a user can make with the CLI ends in one line on stderr naming what is wrong
and a non-zero exit (2: the command line is wrong; 1: a well-formed command cannot be done),
never a Python traceback. Each row runs the real command in its own process."""

from __future__ import annotations

import subprocess

import pytest

from .server_harness import free_port
from .test_server_start import kamicore

SKU = ("sku", "create", "s", "--name", "S", "--face-value", "1.00")
CODES = "A-1\nB-2\n"

# (name, command, settings, exit code, what the one line says)
CASES = [
    ("call: malformed JSON", ("call", "Orders/GetOrder", "{bad"), {}, 2,
     "the request is not a valid kamicore.v1.GetOrderRequest in JSON: Expecting property name"),
    ("call: an unknown field", ("call", "Orders/GetOrder", '{"nope": 1}'), {}, 2,
     'has no field named "nope"'),
    ("call: a field of the wrong type", ("call", "Orders/GetOrder", '{"orderId": 5}'), {}, 2,
     "Failed to parse orderId field"),
    ("call: not an object", ("call", "Orders/GetOrder", "[]"), {}, 2,
     "the request must be a JSON object"),
    ("call: an unknown method", ("call", "Orders/Nope", "{}"), {}, 2,
     "no method kamicore.v1.Orders/Nope"),
    ("call: a missing key file", ("call", "--key-file", "NOFILE", "Orders/GetOrder", "{}"), {},
     1, "NOFILE: No such file or directory"),
    ("call: a key with a control byte", ("call", "--key", "kc_\x01", "Orders/GetOrder", "{}"),
     {}, 2, "--key: contains a control character (U+0001)"),
    ("call: a key variable with a line break", ("call", "Orders/GetOrder", "{}"),
     {"KAMICORE_KEY": "kc_a\nkc_b"}, 2, "printable ASCII only"),
    ("call: no server there", ("call", "--target", "PORT", "Orders/GetOrder", "{}"), {}, 1,
     "UNAVAILABLE"),
    ("import: a missing file", ("import", "NOFILE", "--sku", "s", "--batch", "b"), {}, 1,
     "NOFILE: No such file or directory"),
    ("import: a file that is not UTF-8", ("import", "LATIN1", "--sku", "s", "--batch", "b"),
     {}, 1, "line 2 is not UTF-8 text; nothing was imported"),
    ("import: a control byte in --sku", ("import", "CODES", "--sku", "s\x07", "--batch", "b"),
     {}, 2, "--sku: contains a control character (U+0007)"),
    ("import: a bad time", ("import", "CODES", "--sku", "s", "--batch", "b", "--valid-until",
                            "soon"), {}, 2, "--valid-until: must be ISO 8601"),
    ("import: a batch id too long", ("import", "CODES", "--sku", "s", "--batch", "b" * 65), {},
     2, "--batch:"),
    ("order show: bytes that are not UTF-8", ("order", "show", "o-\udcff"), {}, 2,
     "argument 5: is not valid UTF-8"),
    ("an unknown command", ("nope",), {}, 2, "invalid choice: 'nope'"),
    ("a missing argument", ("import",), {}, 2, "the following arguments are required"),
    ("serve: a listen address without a port", ("serve", "--listen", "127.0.0.1"), {}, 2,
     "listen: '127.0.0.1' must be host:port"),
    ("a settings file that is not there", ("stock",), {"KAMICORE_CONFIG": "NOFILE"}, 2,
     "No such file or directory"),
    ("a malformed master key", ("stock",), {"KAMICORE_MASTER_KEY": "xyz"}, 1,
     "KAMICORE_MASTER_KEY: a master key must be 32 bytes in hex"),
    ("the wrong master key", ("stock",), {"KAMICORE_MASTER_KEY": "11" * 32}, 1,
     "the master key does not open"),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data dir with one SKU, made once for every row."""
    folder = tmp_path_factory.mktemp("cli-errors")
    run(folder / "var", SKU, {}).check_returncode()
    return folder / "var"


def run(data_dir, command, settings) -> subprocess.CompletedProcess:
    return kamicore(data_dir, *command, settings=settings)


@pytest.mark.parametrize("name, command, settings, exit_code, says", CASES,
                         ids=[case[0] for case in CASES])
def test_a_user_error_is_one_line_and_no_traceback(data_dir, tmp_path, name, command,
                                                   settings, exit_code, says):
    (tmp_path / "codes.txt").write_text(CODES)
    (tmp_path / "latin1.txt").write_bytes("A-1\nCAFÉ-2\n".encode("latin-1"))
    names = {"NOFILE": str(tmp_path / "NOFILE"), "CODES": str(tmp_path / "codes.txt"),
             "LATIN1": str(tmp_path / "latin1.txt"), "PORT": f"127.0.0.1:{free_port()}"}
    command = [names.get(arg, arg).replace("NOFILE", str(tmp_path / "NOFILE"))
               for arg in command]
    settings = {name: value.replace("NOFILE", str(tmp_path / "NOFILE"))
                for name, value in settings.items()}
    result = run(data_dir, command, settings)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert result.returncode == exit_code, result.stderr
