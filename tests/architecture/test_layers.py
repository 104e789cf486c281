"""Imports only run downward (issue 11): every import of every talkface module, read from the source with `ast`.

Each module has a layer rank, given by the most specific prefix in `LAYERS`; a module may import modules of its own
rank or lower. Module-level and function-level (lazy) imports count alike, relative imports are resolved against the
importing module's package, and `from package import name` counts as an import of `package.name` when that is a
module. `importlib` (and `__import__`) may appear only in talkface/utils/imports.py, the lazy-import helper.
"""

import ast
from pathlib import Path

from tests.utils import REPO_ROOT

# module prefix -> rank (most specific prefix wins); the table of the project brief
LAYERS = {
    "talkface": 0, "talkface.errors": 0, "talkface.utils": 0, "talkface.hub.registry": 0,
    "talkface.hub": 1,
    "talkface.media": 2,
    "talkface.faces": 3,
    "talkface.networks": 4,  # plain-PyTorch layers that talkface.models builds on (no transformers)
    "talkface.models": 4,
    "talkface.hub.download": 5,
    "talkface.pipelines": 6,
    "talkface.metrics": 7,
    "talkface.evaluation": 8,
    "talkface.training": 9,
    "talkface.demo": 10,
    "talkface.cli": 11, "talkface.commands": 11, "talkface.__main__": 11,
}
IMPORTLIB_ALLOWED = {"talkface.utils.imports"}


def rank_of(module: str, layers=LAYERS):
    """(prefix, rank) of the most specific prefix of `module` in `layers`, or None for a module outside them."""
    matches = [prefix for prefix in layers if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        return None
    prefix = max(matches, key=len)
    return prefix, layers[prefix]


def package_modules(root: Path) -> dict:
    """module name -> (path, is_package) for every .py file under the package folder `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = (path, is_package)
    return modules


def imported_modules(tree, module: str, is_package: bool, known: set):
    """(line, imported module) of every import in `tree` (all nesting levels), relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield node.lineno, submodule if submodule in known else source


def uses_importlib(tree):
    """Lines that import importlib or call __import__."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "importlib" for a in node.names):
            yield node.lineno
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "importlib":
            yield node.lineno
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            yield node.lineno


def check_layers(root: Path, layers=LAYERS, importlib_allowed=IMPORTLIB_ALLOWED) -> list:
    """Every violation under the package folder `root`, as 'path:line: what' strings."""
    modules = package_modules(root)
    top = root.name
    problems = []
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(root.parent).as_posix()
        own = rank_of(module, layers)
        if own is None:
            problems.append(f"{where}:1: {module} has no layer rank")
            continue
        for line, target in imported_modules(tree, module, is_package, set(modules)):
            if target != top and not target.startswith(top + "."):
                continue  # third-party and standard library
            found = rank_of(target, layers)
            if found is None:
                problems.append(f"{where}:{line}: {module} imports {target}, which has no layer rank")
            elif found[1] > own[1]:
                problems.append(f"{where}:{line}: {module} (rank {own[1]}, {own[0]}) imports {target} "
                                f"(rank {found[1]}, {found[0]}): imports must run downward")
        if module not in importlib_allowed:
            problems += [f"{where}:{line}: {module} uses importlib; use talkface.utils.imports instead"
                         for line in uses_importlib(tree)]
    return problems


def test_imports_only_run_downward():
    problems = check_layers(REPO_ROOT / "talkface")
    assert not problems, "\n".join(problems)


def test_the_checker_reports_an_upward_import_and_importlib(tmp_path):
    package = tmp_path / "talkface"
    files = {
        "__init__.py": "",
        "errors.py": "class E(Exception):\n    pass\n",
        "hub/__init__.py": "",
        "hub/registry.py": "from ..errors import E\n",  # rank 0 -> 0: fine
        "hub/cards.py": "def f():\n    from ..models import wav2lip\n    return wav2lip\n",  # 1 -> 4, lazily
        "hub/download.py": "from talkface.models import wav2lip\n",  # 5 -> 4: fine
        "models/__init__.py": "from . import wav2lip\nfrom ..hub import registry\n",  # 4 -> 4, 4 -> 0: fine
        "models/wav2lip.py": "import importlib\nimport os\n",
        "utils/__init__.py": "",
        "utils/imports.py": "import importlib\n",  # the one allowed place
        "pipelines/__init__.py": "from .. import metrics\n",  # 6 -> 7
        "metrics/__init__.py": "",
    }
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    problems = check_layers(package)
    assert len(problems) == 3, problems
    assert any(p.startswith("talkface/hub/cards.py:2: talkface.hub.cards (rank 1") and "talkface.models.wav2lip (rank 4"
               in p for p in problems), problems
    assert any(p.startswith("talkface/pipelines/__init__.py:1:") and "imports talkface.metrics (rank 7" in p
               for p in problems), problems
    assert any(p.startswith("talkface/models/wav2lip.py:1:") and "uses importlib" in p for p in problems), problems


def test_ranks_follow_the_most_specific_prefix():
    assert rank_of("talkface.hub.registry") == ("talkface.hub.registry", 0)
    assert rank_of("talkface.hub.cards") == ("talkface.hub", 1)
    assert rank_of("talkface.hub.download") == ("talkface.hub.download", 5)
    assert rank_of("talkface.models.wav2lip.modeling_wav2lip")[1] == 4
    assert rank_of("talkface.commands.generate")[1] == 11
    assert rank_of("talkface") == ("talkface", 0)
    assert rank_of("numpy") is None
