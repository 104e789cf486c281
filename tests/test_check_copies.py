"""tools/check_copies.py: every `# Copied from` block equals its source (with its `with A->B` replacements)."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_tool():
    spec = importlib.util.spec_from_file_location("check_copies", REPO_ROOT / "tools" / "check_copies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_copies = _load_tool()


def test_every_copy_in_the_repository_equals_its_source():
    # the command as a contributor runs it, in check mode
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "check_copies.py")], capture_output=True,
                            text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    stale = check_copies.check_copies(REPO_ROOT)
    assert not stale, "stale copies (run `python tools/check_copies.py --fix`): " + ", ".join(
        f"{copy.path.name}:{copy.marker_line}" for copy in stale)
    assert check_copies.main([]) == 0
    # the repository really has marked copies, so the check above checks something
    index = check_copies.SourceIndex(REPO_ROOT)
    copies = [copy for path in check_copies.python_files(REPO_ROOT) for copy in check_copies.find_copies(path, index)]
    assert len(copies) >= 9
    assert {"TalkLipConvBlock", "SyncNetConvBlock", "TalkFaceExpertConvBlock"} <= {
        copy.current.split("class ")[1].split("(")[0] for copy in copies if "class " in copy.current.split("\n")[0]}


SOURCE = '''\
"""A model."""

import torch


class AlphaBlock(torch.nn.Module):
    """Alpha block."""

    def __init__(self, width):
        super().__init__()
        self.alpha_width = width

    def forward(self, hidden_states):
        return hidden_states * self.alpha_width


def alpha_helper(value):
    return value + 1
'''

COPY = '''\
"""Another model."""

import torch


# Copied from talkface.models.alpha.modeling_alpha.AlphaBlock with Alpha->Beta, alpha->beta
class BetaBlock(torch.nn.Module):
    """Beta block."""

    def __init__(self, width):
        super().__init__()
        self.beta_width = width

    def forward(self, hidden_states):
        return hidden_states * self.beta_width


class BetaModel:
    # Copied from talkface.models.alpha.modeling_alpha.alpha_helper
    def alpha_helper(value):
        return value + 1

    # Copied from talkface.models.alpha.modeling_alpha.AlphaBlock.forward with alpha->beta
    def forward(self, hidden_states):
        return hidden_states * self.beta_width
'''


@pytest.fixture
def tree(tmp_path):
    models = tmp_path / "talkface" / "models"
    (models / "alpha").mkdir(parents=True)
    (models / "beta").mkdir()
    (models / "alpha" / "modeling_alpha.py").write_text(SOURCE)
    (models / "beta" / "modeling_beta.py").write_text(COPY)
    return tmp_path


def test_faithful_copies_pass_with_renames_nesting_and_reindenting(tree):
    assert check_copies.check_copies(tree) == []
    assert check_copies.main(["--root", str(tree)]) == 0


@pytest.mark.parametrize("edit", [
    ("return hidden_states * self.beta_width\n\n\nclass", "return hidden_states * self.beta_width * 2\n\n\nclass"),
    ('"""Beta block."""', '"""Beta block, edited."""'),
    ("    def alpha_helper(value):\n        return value + 1",
     "    def alpha_helper(value):\n        return value + 2"),
])
def test_a_drifted_copy_is_reported_and_fix_restores_it(tree, edit, capsys):
    copy_path = tree / "talkface" / "models" / "beta" / "modeling_beta.py"
    old, new = edit
    assert COPY.count(old) == 1
    copy_path.write_text(COPY.replace(old, new))
    stale = check_copies.check_copies(tree)
    assert len(stale) == 1
    assert check_copies.main(["--root", str(tree)]) == 1
    assert "differs from its source" in capsys.readouterr().out
    assert check_copies.main(["--root", str(tree), "--fix"]) == 0
    assert copy_path.read_text() == COPY
    assert check_copies.check_copies(tree) == []


def test_a_source_change_makes_the_copies_stale(tree):
    source_path = tree / "talkface" / "models" / "alpha" / "modeling_alpha.py"
    source_path.write_text(SOURCE.replace("return value + 1", "return value + 10"))
    stale = check_copies.check_copies(tree)
    assert [copy.target for copy in stale] == ["talkface.models.alpha.modeling_alpha.alpha_helper"]
    check_copies.check_copies(tree, fix=True)
    assert "return value + 10" in (tree / "talkface" / "models" / "beta" / "modeling_beta.py").read_text()


@pytest.mark.parametrize("marker, message", [
    ("# Copied from talkface.models.alpha.modeling_alpha.GammaBlock", "has no GammaBlock"),
    ("# Copied from talkface.models.gamma.modeling_gamma.AlphaBlock", "no module file"),
    ("# Copied from talkface.models.alpha.modeling_alpha.AlphaBlock (a block like it)", "cannot read the marker"),
    ("# Copied from talkface.models.alpha.modeling_alpha.AlphaBlock with Alpha", "cannot read the replacement"),
])
def test_unreadable_markers_are_errors(tree, marker, message, capsys):
    copy_path = tree / "talkface" / "models" / "beta" / "modeling_beta.py"
    copy_path.write_text(COPY.replace(
        "# Copied from talkface.models.alpha.modeling_alpha.AlphaBlock with Alpha->Beta, alpha->beta", marker))
    with pytest.raises(check_copies.CopyMarkerError, match=message):
        check_copies.check_copies(tree)
    assert check_copies.main(["--root", str(tree)]) == 2
    assert message in capsys.readouterr().err


def test_a_marker_must_sit_above_a_definition(tree):
    copy_path = tree / "talkface" / "models" / "beta" / "modeling_beta.py"
    copy_path.write_text(COPY + textwrap.dedent("""
        # Copied from talkface.models.alpha.modeling_alpha.alpha_helper
        VALUE = 3
    """))
    with pytest.raises(check_copies.CopyMarkerError, match="just above a def or class"):
        check_copies.check_copies(tree)
