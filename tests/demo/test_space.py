"""The Hugging Face Space entry: spaces/README.md's front matter and spaces/requirements.txt are what a Space
needs, and app.py starts as a Space starts it (no arguments, SPACE_ID and GRADIO_SERVER_PORT set)."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from tests.utils import REPO_ROOT

SPACES = REPO_ROOT / "spaces"


def front_matter(path):
    text = path.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, f"{path} must start with a --- YAML block ---"
    return yaml.safe_load(match.group(1)), text[match.end():]


def test_space_readme_front_matter_and_requirements():
    meta, body = front_matter(SPACES / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (REPO_ROOT / meta["app_file"]).is_file()
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(meta["sdk_version"])) and int(str(meta["sdk_version"])[0]) >= 5
    assert meta["license"] == "apache-2.0" and len(meta.get("short_description", "")) <= 60
    assert "# talkface demo" in body
    # the project's own README stays plain Markdown for GitHub readers (no front matter at its top)
    assert not (REPO_ROOT / "README.md").read_text(encoding="utf-8").startswith("---")
    requirements = [line.split("#")[0].strip() for line in (SPACES / "requirements.txt").read_text().splitlines()]
    names = {re.split(r"[<>=\[ ]", line)[0].lower() for line in requirements if line and not line.startswith("-")}
    # what app.py needs at import and start-up (gradio comes from the Space's sdk_version), and talkface itself
    assert {"torch", "mediapipe", "av", "transformers", "numpy", "opencv-contrib-python", "pandas", "."} <= names
    assert "torchvision" not in names


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_app_starts_with_the_space_environment(tmp_path):
    pytest.importorskip("gradio")
    port = free_port()
    env = dict(os.environ, SPACE_ID="someone/talkface", GRADIO_SERVER_PORT=str(port), PYTHONPATH=str(REPO_ROOT),
               TALKFACE_DEMO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    for name in ("TALKFACE_GENERATOR", "TALKFACE_SYNCNET_LSE", "TALKFACE_AVHUBERT", "GRADIO_SERVER_NAME"):
        env.pop(name, None)
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        # as a Space runs it: `python app.py`, no arguments, from the folder holding it (here: an empty one)
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "app.py")], cwd=tmp_path, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline, page = time.monotonic() + 180, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode("utf-8", "replace")
                    break
            except OSError:
                time.sleep(1)
        assert page is not None, log.read_text()
        assert "gradio" in page.lower()
        # all interfaces (a Space's proxy reaches the container from outside), on the Space's port
        assert f"0.0.0.0:{port}" in log.read_text()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
