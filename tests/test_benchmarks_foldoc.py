"""The foldoc task's data: FOLDOC's dictd database (dictfmt(1): an index of base-64 offsets and lengths into the
uncompressed text), its entries' topic tags, and where the database is looked for."""

import gzip

import _tasks
import pytest
from _tasks import FOLDOC_TOPICS, dictd_number, foldoc_dir, foldoc_entries

# Entries laid out as Debian's dict-foldoc 20230119 writes them: headword line(s), a blank line, the definition
# (indented, its tags first, a wrapped line may lose its indent), a blank line and the date it was last changed.
ENTRIES = [
    "00-database-short\n     The Free On-line Dictionary of Computing (19 January 2023)\n",
    "*LISP\nStarLISP\n\n   <language> (StarLISP) A {data-parallel} extension of {Common LISP}\n"
    "   for the {Connection\nMachine}.\n\n   [{Jargon File}]\n\n   (2014-12-17)\n\n",
    "(tm)\n\n   <legal> (Trademark) An {ASCII} rendition of the trademark\n   symbol.\n\n   (2014-11-27)\n\n",
    "*brainfuck\n\n   <programming, humour> A variant of {Brainfuck}.\n\n   (2022-08-28)\n\n",
    "router\n\n   <networking> A device which forwards packets\n   between networks [RFC 1812].\n\n"
    "   (1999-01-01)\n\n",
]


def _digits(value: int) -> str:
    """``value`` in dictd's base 64, written here from its definition (not with the code under test)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = alphabet[value % 64]
    while value >= 64:
        value //= 64
        out = alphabet[value % 64] + out
    return out


def _database() -> tuple[str, bytes]:
    data, spans = b"", []
    for entry in ENTRIES:
        raw = entry.encode()
        spans.append((len(data), len(raw)))
        data += raw
    lines = [f"{head}\t{_digits(offset)}\t{_digits(length)}" for head, (offset, length) in zip(
        ["00-database-short", "*lisp", "(tm)", "*brainfuck", "router"], spans, strict=True
    )]  # fmt: skip
    lines.insert(2, f"starlisp\t{_digits(spans[1][0])}\t{_digits(spans[1][1])}")  # a second headword, one entry
    return "\n".join(lines) + "\n", data


def test_dictd_numbers_are_base_64_most_significant_digit_first():
    assert dictd_number("A") == 0 and dictd_number("/") == 63
    assert dictd_number("BA") == 64
    assert dictd_number("Gb9L") == ((6 * 64 + 27) * 64 + 61) * 64 + 11  # "!" in dict-foldoc's own index
    assert [dictd_number(_digits(n)) for n in (0, 63, 64, 4095, 4096, 2_278_322)] == [0, 63, 64, 4095, 4096, 2_278_322]


def test_entries_keep_the_definition_of_single_topic_entries_once():
    index, data = _database()
    assert foldoc_entries(index, data) == [
        # the bracketed source that would name the topic dropped, braces gone, whitespace collapsed; read once
        # although two headwords point at it
        ("(StarLISP) A data-parallel extension of Common LISP for the Connection Machine.", "language"),
        ("(Trademark) An ASCII rendition of the trademark symbol.", "legal"),
        # two topics: skipped; the database's own entry has no tag: skipped
        ("A device which forwards packets between networks .", "networking"),
    ]


def test_topics_are_twelve_distinct_tags():
    assert len(FOLDOC_TOPICS) == len(set(FOLDOC_TOPICS)) == 12


def test_foldoc_dir_takes_the_named_folder_then_the_installed_one(tmp_path, monkeypatch):
    index, data = _database()
    named = tmp_path / "named"
    named.mkdir()
    (named / "foldoc.index").write_text(index)
    monkeypatch.setenv("HF_GEN_FOLDOC", str(named))
    with pytest.raises(RuntimeError, match=r"HF_GEN_FOLDOC=.* lacks the files foldoc.dict.dz"):
        foldoc_dir()
    (named / "foldoc.dict.dz").write_bytes(gzip.compress(data))  # dictzip is gzip with a seek table
    assert foldoc_dir() == named
    monkeypatch.delenv("HF_GEN_FOLDOC")
    asked = {}

    def files(package, inside, names, env, system_dir):
        asked.update(package=package, inside=inside, names=names, env=env, system_dir=system_dir)
        return system_dir

    monkeypatch.setattr(_tasks, "debian_files", files)
    assert foldoc_dir() == _tasks.FOLDOC_SYSTEM_DIR
    assert asked == {
        "package": "dict-foldoc",
        "inside": "usr/share/dictd",
        "names": ("foldoc.index", "foldoc.dict.dz"),
        "env": "HF_GEN_FOLDOC",
        "system_dir": _tasks.FOLDOC_SYSTEM_DIR,
    }
