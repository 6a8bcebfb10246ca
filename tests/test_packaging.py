"""Packaging and architecture rules, checked statically (no simulator, no imports of the checked code).

- every folder of rtl/, model/, tb/ with Python files is a package listed in pyproject's ``packages``;
- the installed ``cimdv`` is this checkout (editable install);
- model/ imports no HDL or simulator; rtl/ imports no testbench, model or simulator (direct imports; the
  transitive check is import-linter's, ``make lint``);
- no file edits ``sys.path`` or ``PYTHONPATH``; no blanket ``noqa``.
"""

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]  # {"cimdv.rtl": "rtl", ...}
SOURCE_DIRS = ["rtl", "model", "tb", "tests"]
SKIP_DIRS = {"__pycache__", "build", ".venv"}


def python_files(*folders: str) -> list[Path]:
    files = []
    for folder in folders:
        files += [p for p in sorted((ROOT / folder).rglob("*.py")) if not SKIP_DIRS & set(p.parts)]
    return files


def module_name(path: Path) -> str:
    """Dotted name of a file under a mapped folder, e.g. rtl/core/core.py -> cimdv.rtl.core.core."""
    rel = path.relative_to(ROOT)
    for package, folder in PACKAGE_DIRS.items():
        if rel.parts[0] == folder:
            parts = [package, *rel.parts[1:-1]]
            if path.stem != "__init__":
                parts.append(path.stem)
            return ".".join(parts)
    raise ValueError(f"{rel} is not under a mapped folder")


def imported_modules(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative imports resolved against ``package``
    (default: the package ``path`` belongs to)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        package = module_name(path) if path.stem == "__init__" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module
            found.append((node.lineno, stem))
            found += [(node.lineno, f"{stem}.{alias.name}") for alias in node.names]
    return found


def _is_under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# --- packages ------------------------------------------------------------------------------------


def test_every_package_folder_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if SKIP_DIRS & set(init.parts):
                continue
            found.add(".".join([package, *init.parent.relative_to(ROOT / folder).parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "listed in pyproject.toml but no such folder with an __init__.py"


def test_every_folder_with_python_files_is_a_package():
    for folder in PACKAGE_DIRS.values():
        for path in python_files(folder):
            assert (path.parent / "__init__.py").exists(), f"{path.parent.relative_to(ROOT)} lacks __init__.py"


def test_installed_package_is_this_checkout():
    import cimdv.model
    import cimdv.rtl
    import cimdv.tb

    for module, folder in ((cimdv.rtl, "rtl"), (cimdv.model, "model"), (cimdv.tb, "tb")):
        assert Path(module.__file__).resolve().parent == ROOT / folder, (
            f"{module.__name__} is imported from {module.__file__}; reinstall: pip install -e '.[lint]'"
        )


# --- architecture --------------------------------------------------------------------------------

MODEL_FORBIDDEN = ("amaranth", "cocotb", "cocotb_tools", "cocotb_coverage", "pyuvm", "cimdv.rtl", "cimdv.tb")
RTL_FORBIDDEN = ("cocotb", "cocotb_tools", "cocotb_coverage", "pyuvm", "cimdv.tb", "cimdv.model")


@pytest.mark.parametrize(("folder", "forbidden"), [("model", MODEL_FORBIDDEN), ("rtl", RTL_FORBIDDEN)])
def test_layer_imports(folder, forbidden):
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files(folder)
        for line, name in imported_modules(path)
        if _is_under(name, forbidden)
    ]
    assert violations == []


def test_import_scan_resolves_relative_imports(tmp_path):
    """The layer check is only worth something if relative imports cannot slip past it."""
    sample = tmp_path / "sample.py"
    sample.write_text("from ..rtl.core import macro\nfrom .exact import mvm\nimport amaranth.hdl\n")
    names = {name for _, name in imported_modules(sample, package="cimdv.model")}
    assert {"cimdv.rtl.core", "cimdv.rtl.core.macro", "cimdv.model.exact", "amaranth.hdl"} <= names
    assert _is_under("amaranth.hdl", MODEL_FORBIDDEN)
    assert module_name(ROOT / "rtl" / "core" / "core.py") == "cimdv.rtl.core.core"


# --- hygiene -------------------------------------------------------------------------------------


def _path_edits(path: Path) -> list[str]:
    """sys.path mutations and PYTHONPATH assignments in one Python file (removing PYTHONPATH is fine)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def is_sys_path(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        )

    def is_pythonpath(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and node.value == "PYTHONPATH"

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if is_sys_path(node.func.value) and node.func.attr in {"append", "insert", "extend", "remove", "pop"}:
                found.append(f"line {node.lineno}: sys.path.{node.func.attr}()")
            if node.func.attr in {"setdefault", "putenv"} and node.args and is_pythonpath(node.args[0]):
                found.append(f"line {node.lineno}: {node.func.attr}('PYTHONPATH', ...)")
            if node.func.attr == "addsitedir":
                found.append(f"line {node.lineno}: site.addsitedir()")
            if any(kw.arg == "PYTHONPATH" for kw in node.keywords):
                found.append(f"line {node.lineno}: PYTHONPATH=... keyword")
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AugAssign | ast.AnnAssign)
            else []
        )
        for target in targets:
            if is_sys_path(target) or (isinstance(target, ast.Subscript) and is_sys_path(target.value)):
                found.append(f"line {node.lineno}: assignment to sys.path")
            if isinstance(target, ast.Subscript) and is_pythonpath(target.slice):
                found.append(f'line {node.lineno}: ["PYTHONPATH"] = ...')
        if isinstance(node, ast.Dict) and any(is_pythonpath(key) for key in node.keys):
            found.append(f"line {node.lineno}: {{'PYTHONPATH': ...}}")
    return found


def test_no_sys_path_or_pythonpath_edits():
    edits = {str(p.relative_to(ROOT)): e for p in python_files(*SOURCE_DIRS) if (e := _path_edits(p))}
    assert edits == {}, "import by the installed package name instead"


def test_no_pythonpath_in_build_files():
    shell_like = [ROOT / "Makefile", ROOT / ".ci" / "run", *sorted((ROOT / "sim").glob("*"))]
    pattern = re.compile(r"PYTHONPATH\s*[:+?]?=|export\s+PYTHONPATH")
    hits = [str(p.relative_to(ROOT)) for p in shell_like if p.is_file() and pattern.search(p.read_text())]
    assert hits == []


def test_path_edit_scan_catches_edits(tmp_path):
    sample = tmp_path / "sample.py"
    # The forbidden edit is assembled at run time so that the repository's own text holds no
    # path edit (text scans of the tree stay clean); the AST scan must still catch it.
    path_edit = "sys." + "path.insert(0, 'x')"
    sample.write_text(
        f"import os, sys\n{path_edit}\nos.environ['PYTHONPATH'] = 'x'\nenv = {{'PYTHONPATH': 'x'}}\n"
        "os.environ.pop('PYTHONPATH', None)\n"
    )
    assert len(_path_edits(sample)) == 3


BLANKET_NOQA = re.compile(r"#\s*noqa(?!\s*:\s*[A-Z]+[0-9]+)", re.IGNORECASE)


def test_no_blanket_noqa():
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in python_files(*SOURCE_DIRS)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BLANKET_NOQA.search(line)
    ]
    assert hits == [], "fix the finding, or add a reasoned ignore to [tool.ruff.lint] in pyproject.toml"
