"""talkface.utils.imports: `require` of a dependency whose top level imports a costly module talkface never uses
(mediapipe -> matplotlib.pyplot, issue 14) defers that module until something is asked of it."""

import os
import subprocess
import sys

import pytest

from talkface.utils import imports
from tests.utils import REPO_ROOT


def write_packages(root):
    """`dependency` imports `heavy.plot` at its top level (and uses it only in `draw`); importing `heavy` is logged."""
    (root / "heavy").mkdir()
    (root / "heavy" / "__init__.py").write_text("import builtins\nbuiltins.heavy_imported = True\n")
    (root / "heavy" / "plot.py").write_text("def figure():\n    return 'a real figure'\n")
    (root / "dependency").mkdir()
    (root / "dependency" / "__init__.py").write_text(
        "import heavy.plot as plt\n\ndef draw():\n    return plt.figure()\n")


def run_child(code, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tmp_path)]), "MPLBACKEND": "Agg"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout.strip().splitlines()[-1]


def test_a_deferred_module_is_imported_when_first_used(tmp_path):
    write_packages(tmp_path)
    code = ("import builtins, sys\n"
            "from talkface.utils import imports\n"
            "imports._DEFERRED_IMPORTS['dependency'] = ('heavy', 'heavy.plot')\n"
            "dependency = imports.require('dependency')\n"
            "assert not hasattr(builtins, 'heavy_imported') and 'heavy' not in sys.modules, 'imported early'\n"
            "assert dependency.draw() == 'a real figure'\n"  # the first use imports the real module
            "import heavy.plot\n"
            "assert builtins.heavy_imported and type(sys.modules['heavy.plot']).__name__ == 'module'\n"
            "print('ok')\n")
    assert run_child(code, tmp_path) == "ok"


def test_nothing_is_deferred_when_the_module_is_imported_already(tmp_path):
    write_packages(tmp_path)
    code = ("import sys, heavy.plot\n"
            "from talkface.utils import imports\n"
            "imports._DEFERRED_IMPORTS['dependency'] = ('heavy', 'heavy.plot')\n"
            "dependency = imports.require('dependency')\n"
            "print(dependency.plt is heavy.plot)\n")
    assert run_child(code, tmp_path) == "True"


def test_a_missing_dependency_still_says_what_to_install(monkeypatch):
    monkeypatch.setitem(imports._DEFERRED_IMPORTS, "talkface_no_such_module", ("heavy",))
    with pytest.raises(imports.MissingDependencyError, match="pip install talkface_no_such_module"):
        imports.require("talkface_no_such_module")
    assert "heavy" not in sys.modules


def test_mediapipe_without_matplotlib(tmp_path):
    """mediapipe through `require` leaves matplotlib unimported; its drawing utilities still reach real pyplot."""
    pytest.importorskip("mediapipe")
    code = ("import sys\n"
            "from talkface.utils.imports import require\n"
            "mp = require('mediapipe')\n"
            "assert not any(m.startswith('matplotlib') for m in sys.modules), 'matplotlib imported'\n"
            "assert mp.solutions.face_detection.FaceDetection and mp.solutions.face_mesh.FaceMesh\n"
            "figure = mp.solutions.drawing_utils.plt.figure\n"
            "import matplotlib.pyplot\n"
            "print(figure is matplotlib.pyplot.figure)\n")
    assert run_child(code, tmp_path) == "True"
