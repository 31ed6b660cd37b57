"""The glosses and verbs tasks' data: WordNet's data.noun and data.verb format (wndb(5WN)) and where the database is
looked for."""

import _tasks
import pytest
from _tasks import GLOSS_FILES, VERB_FILES, synset_glosses, wordnet_dir

# Two synset lines as WordNet 3.0's data.noun writes them, after a licence line (which starts with two spaces)
DATA_NOUN = (
    "  1 This software and database is being provided to you, the LICENSEE | not a synset\n"
    "01466257 05 n 01 chordate 0 003 @ 00015388 n 0000 | any animal of the phylum Chordata having a notochord\n"
    "02958343 06 n 05 car 0 auto 0 automobile 0 machine 0 motorcar 0 031 @ 03791235 n 0000 | a motor vehicle with "
    'four wheels; usually propelled by an internal combustion engine; "he needs a car to get to work"  \n'
)


def test_noun_glosses_read_the_file_number_and_the_gloss_and_skip_the_licence():
    assert synset_glosses(DATA_NOUN) == [
        ("any animal of the phylum Chordata having a notochord", 5),
        (
            'a motor vehicle with four wheels; usually propelled by an internal combustion engine; "he needs a car to '
            'get to work"',
            6,
        ),
    ]
    # the eight supersenses named by number, as lexnames(5WN) numbers them
    assert GLOSS_FILES[5] == "animal" and GLOSS_FILES[6] == "artifact" and len(GLOSS_FILES) == 8


# A synset line as WordNet 3.0's data.verb writes it: its verb frames (``f``) come before the gloss
DATA_VERB = (
    "  1 This software and database is being provided to you, the LICENSEE | not a synset\n"
    "01833735 38 v 02 hit_the_dirt 0 hit_the_deck 0 001 @ 01831549 v 0000 01 + 02 00 | fall or drop suddenly, "
    'usually to evade some danger; "The soldiers hit the dirt when they heard gunfire"  \n'
)


def test_verb_glosses_read_past_the_frames_to_the_gloss():
    assert synset_glosses(DATA_VERB) == [
        (
            'fall or drop suddenly, usually to evade some danger; "The soldiers hit the dirt when they heard gunfire"',
            38,
        )
    ]
    # the ten supersenses named by number, as lexnames(5WN) numbers them
    assert VERB_FILES[38] == "motion" and VERB_FILES[29] == "body" and len(VERB_FILES) == 10


def test_wordnet_dir_asks_for_the_files_the_task_reads(tmp_path, monkeypatch):
    named = tmp_path / "named"
    named.mkdir()
    (named / "data.noun").write_text(DATA_NOUN)
    monkeypatch.setenv("HF_GEN_WORDNET", str(named))
    with pytest.raises(RuntimeError, match=r"HF_GEN_WORDNET=.* lacks the files data.verb"):
        wordnet_dir(("data.verb",))
    (named / "data.verb").write_text(DATA_VERB)
    assert wordnet_dir(("data.verb",)) == named


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
