"""Checks of the project's packaging, docs configuration and embedded data."""
import ast, configparser, json, re
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]

def settings():
    c = configparser.ConfigParser(delimiters=["="]); c.read(ROOT / "settings.ini"); return c["DEFAULT"]

def test_layout():
    for p in ["settings.ini", "setup.py", "nbs", "progressive_ir", "_quarto.yml", "tests", "data", "README.md", ".ci/run", "LICENSE"]:
        assert (ROOT / p).exists(), p

def test_settings():
    s = settings()
    assert s["tst_flags"].split() == ["slow", "cuda"]
    assert s["allowed_cell_metadata_keys"].strip() == "tags"
    reqs = {re.split(r"[<>=!~ ]", r)[0].lower() for r in s["requirements"].split()}
    for r in ["torch", "torchvision", "diffusers", "peft", "transformers", "accelerate", "lpips", "scikit-image", "matplotlib",
              "papermill", "imageio-ffmpeg", "safetensors", "pandas", "tqdm", "pyyaml"]:
        assert r in reqs, r
    dev = s["dev_requirements"].split()
    assert "nbdev==2.4.14" in dev and "execnb==0.1.18" in dev and "pytest>=8" in dev
    assert "fastcore==1.14.5" in s["requirements"].split()

def quarto_pages(node):
    if isinstance(node, str): yield node
    elif isinstance(node, list):
        for x in node: yield from quarto_pages(x)
    elif isinstance(node, dict):
        if "href" in node: yield node["href"]
        for k in ("contents",):
            if k in node: yield from quarto_pages(node[k])

def test_quarto_lists_existing_pages_and_every_notebook():
    q = yaml.safe_load((ROOT / "_quarto.yml").read_text())
    pages = list(quarto_pages(q["website"]["sidebar"]["contents"]))
    assert pages, "no pages in the sidebar"
    for p in pages: assert (ROOT / "nbs" / p).is_file(), f"_quarto.yml lists {p}, which does not exist under nbs/"
    nbs = {str(p.relative_to(ROOT / "nbs")) for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in str(p)}
    assert nbs <= set(pages), f"notebooks missing from _quarto.yml: {sorted(nbs - set(pages))}"
    assert any(s.get("section") == "Results" for s in q["website"]["sidebar"]["contents"] if isinstance(s, dict))

def test_readme_quick_start_has_two_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```sh\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(block) == 2 and "progressive-ir reproduce --profile smoke" in block[0] and "nbdev_test" in block[1]
    assert "grep -m1 '^pip install -e" in (ROOT / ".ci/run").read_text()
    assert block[1].startswith('pip install -e ".[dev]" && ')

def test_embedded_data_small_and_documented():
    files = [p for p in (ROOT / "data").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    readme = (ROOT / "data" / "README.md").read_text()
    for p in (ROOT / "data" / "videos").glob("*.mp4"): assert p.name in readme

def exported_names(module_py):
    tree = ast.parse(Path(module_py).read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"): yield node.name

def test_every_exported_function_is_exercised_in_its_notebook():
    "Each public function/class of these modules is used in a non-exported cell of its notebook (so nbdev_test runs it)."
    for nb_name, mod in [("00_core", "core"), ("01_sources", "sources"), ("11_cli", "cli")]:
        nb = json.loads((ROOT / "nbs" / f"{nb_name}.ipynb").read_text())
        shown = "\n".join("".join(c["source"]) for c in nb["cells"]
                          if c["cell_type"] == "code" and not "".join(c["source"]).lstrip().startswith("#| export"))
        missing = [n for n in exported_names(ROOT / "progressive_ir" / f"{mod}.py") if not re.search(rf"\b{n}\b", shown)]
        assert not missing, f"{nb_name}: exported but never exercised: {missing}"
