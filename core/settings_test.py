"""Settings from the command line: the spellings --help shows are the ones accepted."""

import dataclasses
from typing import Optional

import pytest

from core.settings import SettingError, Settings, parse_text, setting


@dataclasses.dataclass
class _Example(Settings):
    threshold: Optional[float] = setting(None, "a number or none")
    name: Optional[str] = setting(None, "a string or none")
    steps: int = setting(1, "an integer", minimum=0)


@pytest.mark.parametrize("text", ["None", "NONE", "none", ""])
def test_none_as_help_spells_it(text):
    # --help lists an optional setting as --threshold=FLOAT|NONE
    assert parse_text(_Example, "threshold", text) is None
    # a string's lowercase "none" may be a name: a file, a dataset's configuration
    assert parse_text(_Example, "name", text) == ("none" if text == "none" else None)


def test_values_and_one_line_for_a_wrong_one():
    assert parse_text(_Example, "threshold", "2.5") == 2.5
    assert parse_text(_Example, "name", "nonesuch") == "nonesuch"
    with pytest.raises(SettingError, match=r"^--steps=NONE: expected an integer >= 0$"):
        parse_text(_Example, "steps", "NONE")
    # a whole number written as a float is that integer (on the command line and in a config file)
    assert parse_text(_Example, "steps", "6e5") == 600000 and isinstance(parse_text(_Example, "steps", "6e5"), int)
    with pytest.raises(SettingError, match=r"^--steps=1.5: expected an integer >= 0$"):
        parse_text(_Example, "steps", "1.5")


@dataclasses.dataclass
class _Paths(Settings):
    out_dir: str = setting("out", "a directory", path=True)
    baselines: list = setting([], "directories or names", path=True)
    start: str = setting("\n", "a prompt")


def test_a_paths_leading_tilde_is_the_home_directory_as_a_shell_expands_it(monkeypatch, tmp_path):
    # a shell leaves --out_dir=~/runs as it is: the ~ is not at the start of a word
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_text(_Paths, "out_dir", "~/runs") == f"{tmp_path}/runs"
    assert parse_text(_Paths, "out_dir", "~") == str(tmp_path)
    assert parse_text(_Paths, "out_dir", "runs/~") == "runs/~"
    assert parse_text(_Paths, "baselines", "gpt2,~/my-gpt2") == ["gpt2", f"{tmp_path}/my-gpt2"]
    assert parse_text(_Paths, "start", "~/not a path") == "~/not a path"  # text, not a path
