"""Which files a --data names: the check before the pipeline runs (local_text_files, without Beam)
finds what TokenizeText's Beam match finds, for folders and each kind of glob."""

import pytest

from components.tokenize_text.sources.text_files import local_text_files, match_text_files, why_no_files
from core.errors import MissingFile

TREE = ("top.txt", "notes.md", ".DS_Store", "sub/a.txt", "sub/deeper/b.md", "sub/.git/HEAD", "sub2/c.txt",
        "only_folders/inner/d.txt", "only_hidden/.e.txt")
PATTERNS = ("", "/", "/*", "/*.txt", "/**", "/**/*.txt", "/**.txt", "/*/*.txt", "/s?b/*", "/[st]*", "/[!t]*",
            "/.*", "/sub/.git/*", "/top.txt", "/*/*/*", "/only_folders", "/only_hidden", "/nothing*")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_check_before_the_run_finds_what_beam_finds(tmp_path, pattern):
    for path in TREE:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    full = f"{tmp_path}{pattern}"
    try:
        beam = [m.path for m in match_text_files(full)]
    except MissingFile:
        beam = []
    assert sorted(local_text_files(full)) == beam


@pytest.mark.parametrize("name", ["[draft].txt", "my [x]/", "take*2?.txt"])
def test_a_path_that_exists_is_itself_though_it_holds_glob_characters(tmp_path, name):
    """A file or folder named with [ ] * ?: the path as it is (a glob of it would match other names, or none)."""
    folder = tmp_path / "my [x]"
    folder.mkdir()
    for file in ("[draft].txt", "take*2?.txt", "d.txt", "takeX2!.txt"):
        (folder / file).write_text(file)
    full = str(folder) if name.endswith("/") else str(folder / name)
    expected = sorted(str(p) for p in folder.iterdir()) if name.endswith("/") else [full]
    assert [m.path for m in match_text_files(full)] == expected
    assert sorted(local_text_files(full)) == expected


def test_a_folder_without_files_of_its_own_says_what_it_holds(tmp_path):
    (tmp_path / "books" / "a").mkdir(parents=True)
    (tmp_path / ".notes").write_text("hidden")
    assert why_no_files(str(tmp_path)) == (f"1 subfolder(s): --data='{tmp_path}/**' reads the files in them; 1 hidden "
                                           f"file(s) (a name starting with '.'): --data='{tmp_path}/.*' names them")
    with pytest.raises(MissingFile, match=r"matches no files: 1 subfolder\(s\)"):
        match_text_files(str(tmp_path))


def test_the_split_line_says_how_each_file_was_cut():
    from components.tokenize_text.sources.base import describe_split

    one = {"split_method": "head_tail", "val_fraction": 0.1, "num_files": 1}
    assert describe_split(one) == ("split head_tail: the last 0.1 of each document's characters is val (nanoGPT's "
                                   "split of one text)")
    assert describe_split({**one, "num_files": 7}) == (
        "split head_tail: the last 0.1 of each document's characters is val (nanoGPT's split of its one text, made "
        "in each of these files)")
