"""The README's shell commands as a new user meets them in a fresh shell (issue 16): commands that work when pasted in
section, and an install whose main job needs no browser."""

import re

from tests.utils import REPO_ROOT

README = REPO_ROOT / "README.md"
INSTALL = REPO_ROOT / "tools" / "install.sh"
ACTIVATE = "source .venv/bin/activate"
# programs that exist only inside .venv: bare, they are "command not found" in a fresh shell
VENV_PROGRAMS = ("talkface", "python", "accelerate", "pytest", "pip")


def shell_blocks(text: str) -> list:
    return re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list:
    """The commands of a shell block: comments dropped, continuation lines joined, split at && ; | and after the
    keywords that start a command (do, then, else)."""
    joined = re.sub(r"\\\n", " ", block)
    found = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        for part in re.split(r"&&|\|\||;|\|", line):
            part = re.sub(r"^(?:(?:do|then|else)\s+)+", "", part.strip())
            if part and part not in ("do", "then", "else", "done", "fi"):
                found.append(" ".join(part.split()))
    return found


def test_readme_commands_work_in_a_fresh_shell_in_the_order_written():
    activated, bare = False, []
    for block in shell_blocks(README.read_text(encoding="utf-8")):
        for command in commands(block):
            if command == ACTIVATE:
                activated = True
            elif not activated and command.split()[0] in VENV_PROGRAMS:
                bare.append(command)
    assert not bare, (f"README commands that a fresh shell cannot find before `{ACTIVATE}` (write .venv/bin/... or "
                      f"activate first): {bare}")


def test_the_fresh_shell_check_finds_a_bare_command():
    assert commands("talkface download x  # a comment\nbash tools/install.sh && .venv/bin/python app.py\n") == [
        "talkface download x", "bash tools/install.sh", ".venv/bin/python app.py"]
    assert commands("for n in a b; do \\\n  talkface download $n || break\ndone\n") == [
        "for n in a b", "talkface download $n", "break"]


def test_readme_has_a_gpu_section():
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^#+ GPU\b.*?$(.*?)(?=^#)", text, flags=re.S | re.M)
    assert match, "the README has no GPU section"
    section = " ".join(match.group(1).split())
    assert "CUDA build of torch" in section and "download.pytorch.org/whl" in section  # which torch build
    assert "torch.cuda.is_available()" in section  # how to check that it is used
    assert "faster than real time" in section and "docs/generation.md#benchmarks" in section  # what speed to expect


def test_chromium_is_installed_only_for_the_tests():
    script = [line for line in INSTALL.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    chromium = [line for line in script if "chromium" in line]
    assert chromium and all("with_tests" in line for line in chromium), chromium
    playwright = [line for line in script if "requirements-test.txt" in line]
    assert playwright and all("with_tests" in line for line in playwright), playwright
    assert "playwright" not in (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8").lower()
    blocks = "\n".join(shell_blocks(README.read_text(encoding="utf-8")))
    assert "bash tools/install.sh && .venv/bin/python app.py" in blocks  # the main job: no --tests, no browser
    assert "bash tools/install.sh --tests && .venv/bin/python -m pytest" in blocks
