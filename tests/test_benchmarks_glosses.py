"""The held-out glosses task's data: WordNet's data.noun format (wndb(5WN)) and where the database is looked for."""

import _tasks
import pytest
from _tasks import GLOSS_FILES, noun_glosses, wordnet_dir

# Two synset lines as WordNet 3.0's data.noun writes them, after a licence line (which starts with two spaces)
DATA_NOUN = (
    "  1 This software and database is being provided to you, the LICENSEE | not a synset\n"
    "01466257 05 n 01 chordate 0 003 @ 00015388 n 0000 | any animal of the phylum Chordata having a notochord\n"
    "02958343 06 n 05 car 0 auto 0 automobile 0 machine 0 motorcar 0 031 @ 03791235 n 0000 | a motor vehicle with "
    'four wheels; usually propelled by an internal combustion engine; "he needs a car to get to work"  \n'
)


def test_noun_glosses_read_the_file_number_and_the_gloss_and_skip_the_licence():
    assert noun_glosses(DATA_NOUN) == [
        ("any animal of the phylum Chordata having a notochord", 5),
        (
            'a motor vehicle with four wheels; usually propelled by an internal combustion engine; "he needs a car to '
            'get to work"',
            6,
        ),
    ]
    # the eight supersenses named by number, as lexnames(5WN) numbers them
    assert GLOSS_FILES[5] == "animal" and GLOSS_FILES[6] == "artifact" and len(GLOSS_FILES) == 8


def test_wordnet_dir_takes_the_named_folder_then_says_what_to_install(tmp_path, monkeypatch):
    named = tmp_path / "named"
    named.mkdir()
    (named / "data.noun").write_text(DATA_NOUN)
    monkeypatch.setenv("HF_GEN_WORDNET", str(named))
    assert wordnet_dir() == named
    monkeypatch.delenv("HF_GEN_WORDNET")
    monkeypatch.setattr(_tasks, "WORDNET_SYSTEM_DIR", tmp_path / "absent")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no apt-get to download with
    with pytest.raises(RuntimeError, match=r"apt-get install wordnet-base.*HF_GEN_WORDNET=DIR/usr/share/wordnet"):
        wordnet_dir()
