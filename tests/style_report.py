"""Style figures of the library notebooks' exported code (issue 14, item 7: pages a newcomer can read).

`python tests/style_report.py [NOTEBOOK ...]` prints one row per library notebook (`nbs/*.ipynb`, not the experiments)
and what in each breaks `LIMITS`; `tests/test_style.py` holds every notebook to `LIMITS`. The figures, all over the
code of `#| export` cells:

- `cells`, `4+defs`: export cells, and those holding 4 or more top-level functions and classes (constants do not
  count: a table of small related constants may share a cell);
- `public`, `unshown`: exported public functions and classes, and those that none of the next two cells after their
  definition uses (calls or names); a markdown cell takes one of the two places, an export cell shows nothing;
- `lines`, `>100`, `>120`: code lines (neither blank nor only a comment), and the lines (comments included) longer
  than 100 and 120 columns, with their share of `lines`;
- `;`: statements joined to the one before them by a semicolon (found with `tokenize`, so a `;` inside a string
  does not count);
- `1-line`, `in loop`: statements written on the header line of a compound statement (`if x: y`, `for a in b: y`,
  `else: y`, `try: y`, `def f(): y`), and those of them inside a loop;
- `>40`, `>60`, `longest`: functions and methods (nested ones too) longer than 40 and 60 lines, and the longest.

Issue 14 quotes 155 export cells, 28 with 4+ definitions, 26% unshown, 9.3% of lines over 120 and 134 semicolons:
these are the figures of this checker at commit 037ccde.
"""
from __future__ import annotations

import ast, io, json, re, sys, tokenize
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
EXPORT_DIRECTIVES = {"export", "exports", "exporti"}
LOOPS = (ast.For, ast.AsyncFor, ast.While)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)

LIMITS = dict(
    max_public_per_cell=2,  # public functions and classes in one export cell (a small related pair may share)
    max_functions_per_cell=5,  # functions and classes in all: a public one with its named private phases
    max_line=120,  # columns; the style asks for about 100
    max_semicolons=0,  # one statement per line
    max_oneliners_in_loops=0,  # no `if x: continue` chains in loops
    max_function_lines=60,  # a function longer than this is split into named phases
    max_unshown_share=0.2,  # exported public definitions not shown in the next two cells
)


@dataclass
class Cell:
    "A cell of a notebook: its index, kind and source, and whether nbdev exports it."
    index: int
    kind: str
    source: str
    exported: bool

    @property
    def example(self) -> bool:
        "Whether the cell can show a definition: a code cell that is not exported."
        return self.kind == "code" and not self.exported


@dataclass
class Figures:
    "What the exported code of one notebook holds; each finding names its cell (`cell 12`) for messages."
    notebook: str
    export_cells: int = 0
    cell_functions: list = field(default_factory=list)  # (where, [names of top-level functions and classes])
    public: int = 0
    unshown: list = field(default_factory=list)  # "cell 12: name"
    lines: int = 0
    long_lines: list = field(default_factory=list)  # (where, columns) of lines over 100 columns
    semicolons: list = field(default_factory=list)  # where
    oneliners: list = field(default_factory=list)  # (where, inside a loop, text)
    functions: list = field(default_factory=list)  # (where, name, lines)

    def cells_with(self, n_functions=0, n_public=None) -> list:
        "The export cells with at least `n_functions` functions/classes (or more than `n_public` public ones)."
        out = []
        for where, names in self.cell_functions:
            public = [n for n in names if not n.startswith("_")]
            if len(names) >= n_functions or (n_public is not None and len(public) > n_public):
                out.append(f"{where}: {', '.join(names)}")
        return out

    def lines_over(self, columns) -> list:
        return [f"{where}: {n} columns" for where, n in self.long_lines if n > columns]

    def functions_over(self, n_lines) -> list:
        return [f"{where}: {name} ({n} lines)" for where, name, n in self.functions if n > n_lines]

    @property
    def longest(self) -> int:
        return max((n for *_, n in self.functions), default=0)


def directives(source: str) -> set:
    "The nbdev directives (`#| export`, `# |hide`, ...) in the leading comment lines of a cell."
    found = set()
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        m = re.match(r"\s*#\s*\|\s*([\w-]+)", line)
        if m:
            found.add(m[1])
    return found


def read_cells(nb_path) -> list:
    "The cells of the notebook at `nb_path`, in order."
    nb = json.loads(Path(nb_path).read_text())
    cells = []
    for i, c in enumerate(nb["cells"]):
        src = "".join(c["source"])
        exported = c["cell_type"] == "code" and bool(directives(src) & EXPORT_DIRECTIVES)
        cells.append(Cell(i, c["cell_type"], src, exported))
    return cells


def _python_only(source: str) -> str:
    "`source` with IPython's magics and shell lines blanked, so that `ast` can read the rest."
    keep = []
    for line in source.splitlines():
        magic = line.lstrip().startswith(("%", "!")) or line.rstrip().endswith("?")
        keep.append("" if magic else line)
    return "\n".join(keep)


def names_used(source: str) -> set:
    "Every name and attribute a cell mentions (`f`, `core.f` and `x.f` all mention `f`)."
    try:
        tree = ast.parse(_python_only(source))
    except SyntaxError:
        return set(re.findall(r"[A-Za-z_]\w*", source))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def top_level_functions(tree) -> list:
    "The names of the functions and classes defined at the top level of a cell."
    return [node.name for node in tree.body if isinstance(node, (*FUNCTIONS, ast.ClassDef))]


def semicolon_lines(source: str) -> list:
    "The line numbers (1-based) of the semicolons that join statements in `source`."
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.start[0] for t in tokens if t.type == tokenize.OP and t.string == ";"]


def compound_oneliners(tree, lines) -> list:
    "[(line number, inside a loop)] of the statements written on the header line of a compound statement."
    found = []

    def visit(node, in_loop):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                before = lines[child.lineno - 1].encode()[:child.col_offset].decode(errors="replace")
                if before.strip().endswith(":"):
                    found.append((child.lineno, in_loop))
            inner = in_loop or isinstance(child, LOOPS)
            if isinstance(child, (*FUNCTIONS, ast.ClassDef, ast.Lambda)):
                inner = False  # a function defined in a loop starts afresh
            visit(child, inner)

    visit(tree, False)
    return found


def _count_lines(fig: Figures, where: str, lines: list):
    "Count the code lines and the lines over 100 columns of one export cell."
    for i, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            fig.lines += 1
        if len(line) > 100:
            fig.long_lines.append((f"{where} line {i}", len(line)))


def _count_cell(fig: Figures, cell: Cell):
    "Add the figures of one export cell to `fig`."
    where = f"cell {cell.index}"
    tree = ast.parse(cell.source)
    lines = cell.source.splitlines()
    fig.export_cells += 1
    fig.cell_functions.append((where, top_level_functions(tree)))
    _count_lines(fig, where, lines)
    fig.semicolons += [f"{where} line {i}" for i in semicolon_lines(cell.source)]
    for i, in_loop in compound_oneliners(tree, lines):
        fig.oneliners.append((f"{where} line {i}", in_loop, lines[i - 1].strip()[:60]))
    for node in ast.walk(tree):
        if isinstance(node, FUNCTIONS):
            fig.functions.append((where, node.name, node.end_lineno - node.lineno + 1))


def _count_unshown(fig: Figures, cells: list):
    "Count the public definitions of each export cell and those that none of the next two cells uses."
    for k, cell in enumerate(cells):
        if not cell.exported:
            continue
        public = [n for n in top_level_functions(ast.parse(cell.source)) if not n.startswith("_")]
        shown = set()
        for nxt in cells[k + 1:k + 3]:
            if nxt.example:
                shown |= names_used(nxt.source)
        fig.public += len(public)
        fig.unshown += [f"cell {cell.index}: {n}" for n in public if n not in shown]


def notebook_figures(nb_path) -> Figures:
    "The style figures of the exported code of the notebook at `nb_path`."
    cells = read_cells(nb_path)
    fig = Figures(Path(nb_path).stem)
    for cell in cells:
        if cell.exported:
            _count_cell(fig, cell)
    _count_unshown(fig, cells)
    return fig


def violations(fig: Figures, limits=LIMITS) -> list:
    "What in `fig` breaks `limits`, one line per rule broken (empty when the notebook keeps the style)."
    out = []
    crowded = fig.cells_with(limits["max_functions_per_cell"] + 1, limits["max_public_per_cell"])
    if crowded:
        out.append(f"export cells with more than {limits['max_public_per_cell']} public or "
                   f"{limits['max_functions_per_cell']} functions/classes in all: {crowded}")
    if fig.lines_over(limits["max_line"]):
        out.append(f"lines over {limits['max_line']} columns: {fig.lines_over(limits['max_line'])}")
    if len(fig.semicolons) > limits["max_semicolons"]:
        out.append(f"semicolon-joined statements: {fig.semicolons}")
    in_loops = [f"{where}: {text}" for where, in_loop, text in fig.oneliners if in_loop]
    if len(in_loops) > limits["max_oneliners_in_loops"]:
        out.append(f"one-line compound statements inside loops: {in_loops}")
    if fig.functions_over(limits["max_function_lines"]):
        out.append(f"functions over {limits['max_function_lines']} lines: "
                   f"{fig.functions_over(limits['max_function_lines'])}")
    if fig.public and len(fig.unshown) / fig.public > limits["max_unshown_share"]:
        out.append(f"{len(fig.unshown)} of {fig.public} public definitions not shown in the next two cells "
                   f"(limit {limits['max_unshown_share']:.0%}): {fig.unshown}")
    return out


def library_notebooks() -> list:
    "The library notebooks: `nbs/*.ipynb` (the experiments in `nbs/experiments` are not library code)."
    return sorted(NBS.glob("*.ipynb"))


HEADER = ("notebook", "cells", "4+defs", "public", "unshown", "lines", ">100", ">120", ";", "1-line", "in loop",
          ">40", ">60", "longest")


def _share(n, of) -> str:
    return f"{n} ({100 * n / of:.1f}%)" if of else str(n)


def figures_row(fig: Figures) -> tuple:
    "One row of the table: the counts of `fig`, with shares where issue 14 quotes shares."
    return (fig.notebook, fig.export_cells, len(fig.cells_with(4)), fig.public, _share(len(fig.unshown), fig.public),
            fig.lines, _share(len(fig.lines_over(100)), fig.lines), _share(len(fig.lines_over(120)), fig.lines),
            len(fig.semicolons), len(fig.oneliners), sum(in_loop for _, in_loop, _ in fig.oneliners),
            len(fig.functions_over(40)), len(fig.functions_over(60)), fig.longest)


def total(figs: list) -> Figures:
    "The figures of several notebooks added up."
    out = Figures("total")
    for f in figs:
        for name, value in vars(f).items():
            if name != "notebook":
                setattr(out, name, getattr(out, name) + value)
    return out


def table(figs: list) -> str:
    "A markdown table of `figs`, one row per notebook and a total."
    rows = [HEADER, *(figures_row(f) for f in figs), figures_row(total(figs))]
    rows = [tuple(str(v) for v in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]

    def fmt(r):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(rows[0]), sep, *map(fmt, rows[1:])])


def main(argv=None) -> int:
    "Print the table for the notebooks named in `argv` (default: every library notebook) and what breaks `LIMITS`."
    paths = [Path(a) for a in argv] if argv else library_notebooks()
    figs = [notebook_figures(p) for p in paths]
    print(table(figs))
    for f in figs:
        for v in violations(f):
            print(f"{f.notebook}: {v[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
