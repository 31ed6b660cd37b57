"""The manpages task's data: the DESCRIPTION paragraphs of a man page's man(7) source, labelled by section, and where
the pages are looked for."""

import gzip

import _tasks
import pytest
from _tasks import MANPAGE_SECTIONS, manpage_paragraphs, manpages_dir, section_paragraphs

# A page as the Linux man-pages project writes one (the shape of open(2)), cut down
PAGE = r""".\" Copyright (C) 1992 Someone
.\" SPDX-License-Identifier: Linux-man-pages-copyleft
.TH open 2 2023-02-05 "Linux man-pages 6.03"
.SH NAME
open, openat, creat \- open and possibly create a file
.SH SYNOPSIS
.nf
.B #include <fcntl.h>
.BI "int open(const char *" pathname ", int " flags );
.fi
.SH DESCRIPTION
The
.BR open ()
system call opens the file specified by
.IR pathname .
If the file does not exist, it may be created by
.BR open ().
.PP
The return value of
.BR open ()
is a file descriptor, a small, nonnegative integer\(emsee
.BR read (2)
and \fBwrite\fP(2) \- for its use.

A blank line ends a paragraph: up to 2\[ha]31 descriptors\[em]as many as
.I RLIMIT_NOFILE allows \" an inline comment
(see \[lq]limits\[rq]) \
and a line continued.
.B "an unclosed quote
.\" a comment inside the section
.PP
Too short.
.EX
fd = open("x", O_RDONLY);
.EE
.TP
.B O_CLOEXEC
Enable the close-on-exec flag for the new file descriptor, which \fIavoids\fR a race.
.SS Subsection
The last paragraph of the section's text\~runs on \e to the next heading (\[aq]\e0\(aq ends it).
.SH RETURN VALUE
On success, a file descriptor is returned and this paragraph is not in DESCRIPTION.
"""


def test_paragraphs_of_the_description_with_font_requests_and_escapes_resolved():
    assert manpage_paragraphs(PAGE) == [
        "The open() system call opens the file specified by pathname. If the file does not exist, it may be created "
        "by open().",
        "The return value of open() is a file descriptor, a small, nonnegative integer - see read(2) and write(2) - "
        "for its use.",
        'A blank line ends a paragraph: up to 2^31 descriptors - as many as RLIMIT_NOFILE allows (see "limits") and a '
        "line continued. an unclosed quote",
        "O_CLOEXEC Enable the close-on-exec flag for the new file descriptor, which avoids a race.",  # a .TP item
        "The last paragraph of the section's text runs on \\ to the next heading ('\\0' ends it).",
    ]
    short = manpage_paragraphs(PAGE, min_chars=1)
    assert "Too short." in short  # dropped above by its length alone
    assert not any("fd = open" in p or "RETURN" in p or "On success" in p or "comment" in p for p in short)
    assert manpage_paragraphs(".so man2/open.2\n") == []  # a page that points at another has none


def test_sections_are_deduplicated_across_sections_and_drawn_to_the_same_count(tmp_path):
    shared = "A paragraph that two pages, one in each section, carry word for word."
    for section, count in (("man2", 3), ("man3", 5)):
        (tmp_path / section).mkdir()
        for i in range(count):
            text = f".TH p{i} 2\n.SH DESCRIPTION\nPage {i} of {section} describes its own function in full.\n"
            if i == 0:
                text += f".PP\n{shared}\n"
            raw = text.encode()
            name = tmp_path / section / f"p{i}.{section[-1]}"
            if i % 2:
                name.with_suffix(name.suffix + ".gz").write_bytes(gzip.compress(raw))
            else:
                name.write_bytes(raw)
    rows = section_paragraphs(tmp_path, ("man2", "man3"), per_section=3)
    assert [label for _, label in rows] == [0, 0, 0, 1, 1, 1]
    texts = [text for text, _ in rows]
    assert len(set(texts)) == 6
    # the shared paragraph is kept once, in the first section that has it; man2's four paragraphs drawn to three
    all_rows = section_paragraphs(tmp_path, ("man2", "man3"), per_section=4)  # every one of man2's, 4 of man3's 5
    assert sorted(label for text, label in all_rows if text == shared) == [0]
    assert [sum(label == k for _, label in all_rows) for k in (0, 1)] == [4, 4]
    assert {text for text, label in rows if label == 1} <= {text for text, label in all_rows if label == 1}
    assert list(MANPAGE_SECTIONS) == ["man2", "man3"]


def test_manpages_dir_takes_the_named_folder_and_never_the_shared_system_folder(tmp_path, monkeypatch):
    named = tmp_path / "named"
    (named / "man2").mkdir(parents=True)
    (named / "man2" / "open.2.gz").write_bytes(gzip.compress(PAGE.encode()))
    monkeypatch.setenv("HF_GEN_MANPAGES", str(named))
    with pytest.raises(RuntimeError, match=r"HF_GEN_MANPAGES=.* lacks the files man3/printf.3.gz"):
        manpages_dir()
    (named / "man3").mkdir()
    (named / "man3" / "printf.3.gz").write_bytes(gzip.compress(b".TH printf 3\n"))
    assert manpages_dir() == named
    # /usr/share/man holds other packages' section 3 pages too: only the package's own copy serves, never the
    # installed folder, whatever this machine has installed
    asked = {}

    def fake(package, inside, files, env, system_dir):
        asked.update(package=package, inside=inside, system_dir=system_dir)
        return tmp_path

    monkeypatch.delenv("HF_GEN_MANPAGES")
    monkeypatch.setattr(_tasks, "debian_files", fake)
    assert manpages_dir() == tmp_path
    assert asked == {"package": "manpages-dev", "inside": "usr/share/man", "system_dir": None}


def test_debian_files_without_a_system_folder_says_what_to_install(tmp_path, monkeypatch):
    installed = tmp_path / "installed"
    (installed / "man2").mkdir(parents=True)
    (installed / "man2" / "open.2.gz").write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no apt-get to download with
    assert (
        _tasks.debian_files("manpages-dev", "usr/share/man", ("man2/open.2.gz",), "UNSET_VAR", installed) == installed
    )
    with pytest.raises(RuntimeError, match=r"apt-get install manpages-dev.*UNSET_VAR=DIR/usr/share/man"):
        _tasks.debian_files("manpages-dev", "usr/share/man", ("man2/open.2.gz",), "UNSET_VAR", None)


def test_too_few_paragraphs_for_the_draw_is_an_error(tmp_path):
    for section in ("man2", "man3"):
        (tmp_path / section).mkdir()
        (tmp_path / section / "p.2").write_text(
            f".SH DESCRIPTION\nThe one paragraph of {section}, long enough to count.\n"
        )
    (tmp_path / "man2" / "dangling.2.gz").symlink_to(tmp_path / "absent.2.gz")  # skipped, not read
    assert len(section_paragraphs(tmp_path, ("man2", "man3"), per_section=1)) == 2
    with pytest.raises(RuntimeError, match="fewer than the 2 the task draws: point HF_GEN_MANPAGES"):
        section_paragraphs(tmp_path, ("man2", "man3"), per_section=2)
