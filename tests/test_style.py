"""The library notebooks keep the style of issue 14, item 7, as measured by `tests/style_report.py`.

Each library notebook is one test. A notebook that does not meet the limits yet is listed in `NOT_YET` with what
it still lacks; the mark is strict, so a notebook that becomes clean fails here until it is taken off the list.
`python tests/style_report.py` prints the figures of every notebook and what breaks the limits.
"""
import json

import pytest

from style_report import LIMITS, NBS, library_notebooks, notebook_figures, table, violations

NOT_YET = {}  # every library notebook meets the limits (10_cogvideo was the last, cleaned 2026-12-01)


def _param(path):
    if path.stem not in NOT_YET:
        return pytest.param(path, id=path.stem)
    mark = pytest.mark.xfail(strict=True, reason=f"not cleaned yet: {NOT_YET[path.stem]}")
    return pytest.param(path, id=path.stem, marks=mark)


@pytest.mark.parametrize("path", [_param(p) for p in library_notebooks()])
def test_notebook_style(path):
    broken = violations(notebook_figures(path))
    assert not broken, f"{path.name} breaks the style limits:\n" + "\n".join(broken)


def test_not_yet_names_library_notebooks():
    "Every notebook excused above exists, so that a renamed notebook does not stay excused by an old name."
    names = {p.stem for p in library_notebooks()}
    assert set(NOT_YET) <= names, sorted(set(NOT_YET) - names)
    assert "experiments" not in {p.parent.name for p in library_notebooks()}


def _notebook(tmp_path, cells, name="bad.ipynb"):
    "Write a notebook of `cells` ((kind, source) pairs) and return its path."
    nb = dict(cells=[dict(cell_type=kind, metadata={}, source=src, **({"outputs": [], "execution_count": None}
                                                                       if kind == "code" else {}))
                     for kind, src in cells],
              metadata={}, nbformat=4, nbformat_minor=5)
    path = tmp_path / name
    path.write_text(json.dumps(nb))
    return path


GOOD = [
    ("markdown", "# good\n\nProse saying what `double` does and why."),
    ("code", "#| export\nTABLE = {'a': 1}\nSIZES = (1, 2)\n\ndef double(x):\n    \"Twice `x`.\"\n    return 2 * x"),
    ("code", "assert double(2) == 4"),
    ("markdown", "`Box` holds a value; `s = 'a;b'` is no statement."),
    ("code", "#| export\nclass Box:\n    \"A value.\"\n    def __init__(self, v):\n        self.v = v  # ; in a "
             "comment\n\ndef unbox(b):\n    return b.v\n\ndef _helper():\n    return 'x; y'"),
    ("code", "import m\nm.unbox(Box(1))\n%time double(3)"),
]

BAD = [
    ("code", "#| export\ndef a(): return 1\ndef b():\n    for i in range(3):\n        if i: continue\n"
             "    x = 1; y = 2\n    return x\ndef c(): pass\nclass D: pass\n"),
    ("markdown", "prose"),
    ("code", "a()"),  # b, c and D are not shown in the next two cells
    ("code", "#| export\ndef long():\n" + "    x = 1\n" * 70 + "    return '" + "x" * 130 + "'\n"),
]


def test_checker_passes_a_clean_notebook(tmp_path):
    fig = notebook_figures(_notebook(tmp_path, GOOD))
    assert violations(fig) == [], violations(fig)
    assert (fig.export_cells, fig.public, fig.unshown, fig.semicolons) == (2, 3, [], [])


def test_checker_fails_a_bad_notebook(tmp_path):
    "Each rule is broken once in `BAD`, and each is reported."
    fig = notebook_figures(_notebook(tmp_path, BAD))
    found = "\n".join(violations(fig))
    assert "cell 0: a, b, c, D" in found  # 4 public definitions in one cell
    assert "lines over 120 columns: ['cell 3 line 73: 143 columns']" in found
    assert "semicolon-joined statements: ['cell 0 line 6']" in found
    assert "one-line compound statements inside loops: ['cell 0 line 5: if i: continue']" in found
    assert "functions over 60 lines: ['cell 3: long (72 lines)']" in found
    assert "4 of 5 public definitions not shown" in found and "cell 0: b" in found and "cell 3: long" in found
    assert len(violations(fig)) == 6
    assert len(fig.oneliners) == 4  # def a(): ..., if i: ..., def c(): ..., class D: ...
    assert "| 4+defs |" in table([fig]) and f"{fig.notebook} " in table([fig])


def test_checker_limits_can_be_loosened(tmp_path):
    "The limits are data: the same notebook passes with limits loose enough, so each rule reads its own limit."
    loose = dict(max_public_per_cell=9, max_functions_per_cell=9, max_line=200, max_semicolons=1,
                 max_oneliners_in_loops=1, max_function_lines=100, max_unshown_share=1.0)
    assert set(loose) == set(LIMITS)
    assert violations(notebook_figures(_notebook(tmp_path, BAD)), loose) == []


def test_library_notebooks_are_found():
    names = [p.stem for p in library_notebooks()]
    assert "00_core" in names and "11_cli" in names and all((NBS / f"{n}.ipynb").is_file() for n in names)
