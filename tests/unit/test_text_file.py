"""``read_text_file``: the text of a user's file, or one error naming the file and what is wrong with it."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from openesm3.errors import InputError, WeightsError
from openesm3.utils.text import read_text_file


def test_plain_gzip_and_byte_order_mark(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_bytes("N2A\nÅ\n".encode())
    assert read_text_file(plain) == "N2A\nÅ\n"
    packed = tmp_path / "a.txt.gz"
    packed.write_bytes(gzip.compress(b"N2A\n"))
    assert read_text_file(packed) == "N2A\n"
    marked = tmp_path / "bom.csv"
    marked.write_bytes(b"\xef\xbb\xbfmutant\n")  # spreadsheets save UTF-8 with a byte-order mark
    assert read_text_file(marked) == "mutant\n"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: None, "f: no such file"),
        (lambda p: p.mkdir(), "f: is a directory, not a file"),
        (lambda p: p.write_bytes(b"ok\x00\xff\xfe"), "f: not a text file (byte 3 is not UTF-8)"),
        (lambda p: p.write_bytes(gzip.compress(b"x" * 100)[:20]), "f: damaged gzip data"),
    ],
)
def test_errors_name_the_file(tmp_path: Path, make, needle: str) -> None:  # noqa: ANN001
    path = tmp_path / "f"
    make(path)
    with pytest.raises(InputError, match="^" + re.escape(f"{path.parent / needle}")):
        read_text_file(path)


def test_the_caller_picks_the_error_type_and_names_the_role(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="^--config .*config.json: no such file$"):
        read_text_file(tmp_path / "config.json", role="--config", error=WeightsError)
