"""The held-out fortunes task's data: the fortune-file format, where the files are looked for, and the error that says
what to install when they are nowhere (no download is attempted by these tests)."""

import _tasks
import pytest
from _tasks import FORTUNE_FILES, fortune_entries, fortunes_dir


def test_fortune_entries_split_on_percent_lines_fold_whitespace_and_drop_short_ones():
    text = (
        "First entry,\n\tover two lines.\n%\nshort\n%\n  Third   one, long enough  \n%\n%\nLast, with no closing mark"
    )
    assert fortune_entries(text, min_chars=10) == [
        "First entry, over two lines.",
        "Third one, long enough",
        "Last, with no closing mark",
    ]
    # a line that merely contains % is text; only a line holding % alone separates entries
    assert fortune_entries("100% sure of it\n%\nand the second", min_chars=1) == ["100% sure of it", "and the second"]


def _collections(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in FORTUNE_FILES:
        (folder / name).write_text(f"an entry of {name}\n%\n")
    return folder


def test_fortunes_dir_takes_the_folder_named_by_the_environment_first(tmp_path, monkeypatch):
    named = _collections(tmp_path / "named")
    monkeypatch.setattr(_tasks, "FORTUNES_SYSTEM_DIR", _collections(tmp_path / "system"))
    monkeypatch.setenv("HF_GEN_FORTUNES", str(named))
    assert fortunes_dir() == named
    monkeypatch.delenv("HF_GEN_FORTUNES")
    assert fortunes_dir() == tmp_path / "system"


def test_fortunes_dir_refuses_a_named_folder_without_the_files(tmp_path, monkeypatch):
    named = _collections(tmp_path / "named")
    (named / "science").unlink()
    monkeypatch.setattr(_tasks, "FORTUNES_SYSTEM_DIR", _collections(tmp_path / "system"))
    monkeypatch.setenv("HF_GEN_FORTUNES", str(named))
    with pytest.raises(RuntimeError, match=r"HF_GEN_FORTUNES=.* lacks the files science: set it to the folder"):
        fortunes_dir()


def test_fortunes_dir_uses_an_unpacked_copy_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_GEN_FORTUNES", raising=False)
    monkeypatch.setattr(_tasks, "FORTUNES_SYSTEM_DIR", tmp_path / "absent")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    unpacked = _collections(tmp_path / "cache" / "hf-gen" / "fortunes" / "usr" / "share" / "games" / "fortunes")
    assert fortunes_dir() == unpacked


def test_fortunes_dir_without_the_package_or_apt_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_GEN_FORTUNES", raising=False)
    monkeypatch.setattr(_tasks, "FORTUNES_SYSTEM_DIR", tmp_path / "absent")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no apt-get to download with
    with pytest.raises(RuntimeError, match=r"apt-get install fortunes.*HF_GEN_FORTUNES="):
        fortunes_dir()
