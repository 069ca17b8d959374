"""Files written whole or not at all; JSON read back with errors that name the file."""

import os

import pytest

from core import files


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "config.json")
    files.write_json(path, {"b": 1, "a": [2]})
    assert open(path).read() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}'
    with pytest.raises(RuntimeError, match="cut short"):
        with files.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("{half")
            raise RuntimeError("cut short")
    assert files.read_json(path) == {"b": 1, "a": [2]}
    assert os.listdir(tmp_path) == ["config.json"]


def test_write_file_creates_the_directory_and_takes_text_or_bytes(tmp_path):
    files.write_file(str(tmp_path / "new" / "chars.txt"), "ab\nc")
    files.write_file(str(tmp_path / "new" / "raw.bin"), b"\x00\xff")
    assert (tmp_path / "new" / "chars.txt").read_text() == "ab\nc"
    assert (tmp_path / "new" / "raw.bin").read_bytes() == b"\x00\xff"


def test_read_json_names_a_missing_or_damaged_file(tmp_path):
    missing = str(tmp_path / "missing.json")
    assert files.read_json(missing, default=None) is None
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        files.read_json(missing)
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"a": ')
    with pytest.raises(ValueError, match="damaged.json is not valid JSON"):
        files.read_json(str(damaged))


def test_a_failed_directory_write_leaves_the_old_directory(tmp_path):
    path = str(tmp_path / "saved_model")
    with files.atomic_directory(path) as directory:
        os.makedirs(directory)
        open(os.path.join(directory, "saved_model.pb"), "w").close()
    with pytest.raises(RuntimeError):
        with files.atomic_directory(path) as directory:
            os.makedirs(directory)
            raise RuntimeError("cut short")
    assert os.listdir(tmp_path) == ["saved_model"] and os.listdir(path) == ["saved_model.pb"]
