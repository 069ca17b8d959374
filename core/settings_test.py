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
