"""The docstrings task's data: the docstrings of a package folder's functions, methods and classes, labelled by
package."""

from _tasks import DOCSTRING_PACKAGES, package_docstrings

FIRST = '''
"""A module docstring is not a row."""


def helper():
    """Return the   answer,
    folded onto one line."""


class Thing:
    """A class docstring is a row."""

    def method(self):
        """A method docstring is a row too."""

    def short(self):
        """Too short."""
'''

SECOND = '''
def same():
    """A class docstring is a row."""


async def waiter():
    """An async function's docstring counts."""
'''


def test_docstrings_are_labelled_by_package_folded_deduplicated_and_capped(tmp_path):
    (tmp_path / "alpha" / "sub").mkdir(parents=True)
    (tmp_path / "alpha" / "a.py").write_text(FIRST)
    (tmp_path / "alpha" / "tests").mkdir()
    (tmp_path / "alpha" / "tests" / "t.py").write_text('def t():\n    """A test docstring is skipped."""\n')
    (tmp_path / "alpha" / "sub" / "broken.py").write_text("def (:\n")  # not Python: skipped, not fatal
    (tmp_path / "beta").mkdir()
    (tmp_path / "beta" / "b.py").write_text(SECOND)
    rows = package_docstrings(tmp_path, ("alpha", "beta"), per_package=10)
    assert rows == [
        ("Return the answer, folded onto one line.", 0),
        ("A class docstring is a row.", 0),
        ("A method docstring is a row too.", 0),
        ("An async function's docstring counts.", 1),  # beta's copy of alpha's class docstring is dropped
    ]
    # Capped at one per package: alpha keeps its first; its class docstring was not kept, so beta's copy is new.
    assert package_docstrings(tmp_path, ("alpha", "beta"), per_package=1) == [
        ("Return the answer, folded onto one line.", 0),
        ("A class docstring is a row.", 1),
    ]
    assert len(DOCSTRING_PACKAGES) == len(set(DOCSTRING_PACKAGES)) == 10
