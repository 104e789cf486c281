"""`talkface evaluate` over 2 processes (gloo, CPU): the merged report equals the 1-process report, and a run killed
half-way resumes from the cache without recomputing finished files."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from talkface.cli import main
from talkface.evaluation.distributed import process_device, shard_bounds
from talkface.metrics import METRICS
from talkface.utils.distributed import without_option
from tests.evaluation.test_evaluate import clips, models, write_clip  # noqa: F401  (module fixtures)
from tests.utils import REPO_ROOT, shared_file

PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    for spec in METRICS.values():
        if spec.model_env:
            monkeypatch.delenv(spec.model_env, raising=False)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    # the launched `python -m talkface` processes import this checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))


def test_shards_cover_every_item_once_in_order():
    for count in range(0, 12):
        for shards in range(1, 5):
            bounds = [shard_bounds(count, shards, index) for index in range(shards)]
            assert [i for start, stop in bounds for i in range(start, stop)] == list(range(count))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1
    assert shard_bounds(5, 2, 0) == (0, 3) and shard_bounds(5, 2, 1) == (3, 5)


def test_flags_of_the_worker_processes():
    assert without_option(["-v", "evaluate", "--num-processes", "2", "--quiet"], "--num-processes") == [
        "-v", "evaluate", "--quiet"]
    assert without_option(["evaluate", "--num-processes=3", "--num-proc", "2"], "--num-processes") == ["evaluate"]
    assert process_device("cuda", 3) == "cuda:3" and process_device("cuda:0", 3) == "cuda:0"
    assert process_device("cpu", 1) == "cpu"


def test_a_single_process_group_needs_no_launcher():
    import torch.distributed as dist

    from talkface.utils.distributed import ProcessGroup

    with ProcessGroup() as group:  # no WORLD_SIZE, MASTER_ADDR or MASTER_PORT: nothing to initialise
        assert (group.rank, group.world_size, group.is_main) == (0, 1, True)
        assert group.broadcast({"a": 1}) == {"a": 1} and group.gather(3) == [3]
        group.barrier()
    assert not (dist.is_available() and dist.is_initialized())


def assert_same_values(one, two, path="report"):
    """Equal JSON trees, floats to 1e-6 (relative to their size when larger than 1)."""
    if isinstance(one, dict):
        assert isinstance(two, dict) and list(one) == list(two), path
        for key in one:
            assert_same_values(one[key], two[key], f"{path}.{key}")
    elif isinstance(one, list):
        assert isinstance(two, list) and len(one) == len(two), path
        for index, (a, b) in enumerate(zip(one, two)):
            assert_same_values(a, b, f"{path}[{index}]")
    elif isinstance(one, float) and not isinstance(one, bool):
        assert isinstance(two, (int, float)), path
        assert math.isclose(one, two, rel_tol=1e-6, abs_tol=1e-6) or (math.isnan(one) and math.isnan(two)), \
            f"{path}: {one} != {two}"
    else:
        assert one == two, f"{path}: {one!r} != {two!r}"


@pytest.fixture(scope="module")
def dataset(clips, models, tmp_path_factory):  # noqa: F811
    """Five generated videos (one unreadable, one faceless, one without reference), references, transcripts."""
    root = tmp_path_factory.mktemp("distributed")
    generated, reference = root / "generated", root / "reference"
    generated.mkdir()
    reference.mkdir()
    for stem, source in {"a": clips["real"], "b": clips["moved"], "c": clips["blank"], "e": clips["moved"]}.items():
        shutil.copy(source, generated / f"{stem}.mp4")
    (generated / "d.mp4").write_bytes(b"not a video")
    for stem in ("a", "b", "c", "d"):
        shutil.copy(clips["real"], reference / f"{stem}.mp4")
    (reference / "a.txt").write_text("Text:  HELLO WORLD\n")
    (reference / "b.txt").write_text("good morning to you all\n")
    flags = ["--generated", str(generated), "--reference", str(reference), "--syncnet", str(models["syncnet"]),
             "--fid-inception", str(models["fid"])]
    metrics = ["lse", "ssim", "psnr", "lmd", "fid"]
    if models["avhubert"]:
        flags += ["--avhubert", str(models["avhubert"])]
        metrics.append("avs")
    lip_reader = _tiny_lip_reader(root / "lip_reader")
    if lip_reader:
        flags += ["--lip-reader", str(lip_reader)]
        metrics.append("wer")
    return {"root": root, "flags": flags + ["--metrics", ",".join(metrics)], "metrics": metrics}


def _tiny_lip_reader(folder):
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        return None
    import torch

    from talkface.models.avhubert import AVHubertConfig, AVHubertForLipReading
    from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor
    from talkface.models.avhubert.tokenization_avhubert import AVHubertTokenizer

    torch.manual_seed(0)
    config = AVHubertConfig(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                            encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4, video_frontend_channels=8,
                            resnet_channels=(8, 8, 16, 16), resnet_blocks=(1, 1, 1, 1), decoder_layers=1,
                            decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_attention_heads=4)
    AVHubertForLipReading(config).save_pretrained(folder)
    AVHubertFeatureExtractor().save_pretrained(folder)
    AVHubertTokenizer.from_model_file(shared_file("reference", "avhubert_spm_unigram1000.model")).save_pretrained(
        folder)
    return folder


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_two_processes_write_the_one_process_report(dataset, tmp_path, capsys, use_cache):
    # without a cache the per-file results and FID's activations travel between the processes in memory: the
    # data-set metrics (fid, wer) are enough to show it
    extra = ["--quiet"] + ([] if use_cache else ["--no-cache", "--metrics", ",".join(
        m for m in dataset["metrics"] if m in ("fid", "wer", "psnr"))])
    assert main(["evaluate", *dataset["flags"], "--output", str(tmp_path / "one"), *extra]) == 0
    one_out = capsys.readouterr().out
    assert main(["evaluate", *dataset["flags"], "--output", str(tmp_path / "two"), *extra,
                 "--num-processes", "2"]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one["unavailable"] == {} and "fid" in one["summary"] and len(one["files"]) == 5
    assert one["metrics"] == (dataset["metrics"] if use_cache else [m for m in dataset["metrics"]
                                                                     if m in ("fid", "wer", "psnr")])
    if "wer" in dataset["metrics"]:
        assert one["summary"]["wer"]["files"] == 2  # corpus WER over the two transcripts, computed once
    assert_same_values(one, two)
    for name in ("results.csv", "report.md"):
        lines_one = (tmp_path / "one" / name).read_text().splitlines()
        lines_two = (tmp_path / "two" / name).read_text().splitlines()
        assert len(lines_one) == len(lines_two) and lines_one[0] == lines_two[0]
    plots = [sorted(p.relative_to(tmp_path / run) for p in (tmp_path / run / "plots").rglob("*.png"))
             for run in ("one", "two")]
    assert plots[0] and plots[0] == plots[1]
    assert (tmp_path / "two" / "cache").is_dir() == use_cache
    assert "fid:" in one_out


def cache_state(cache_dir):
    """name -> (inode, mtime) of each finished cache entry (a recomputed entry is a new file)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache_dir.glob("*.json")
            if not p.name.startswith(".")}


def test_a_killed_run_resumes_without_recomputing_finished_files(clips, tmp_path):  # noqa: F811
    # eight files scored with lmd (landmarks on every frame: about a second per file), killed half-way
    generated, reference = tmp_path / "generated", tmp_path / "reference"
    generated.mkdir()
    reference.mkdir()
    frames = clips["frames"]
    for index in range(8):
        write_clip(generated / f"clip{index}.mp4", np.roll(frames, index, axis=2))
        shutil.copy(clips["real"], reference / f"clip{index}.mp4")
    output = tmp_path / "report"
    command = [PYTHON, "-m", "talkface", "evaluate", "--generated", str(generated), "--reference", str(reference),
               "--metrics", "lmd,psnr", "--output", str(output), "--quiet", "--no-plots", "--num-processes", "2"]
    run = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len([n for n in cache_state(output / "cache") if n.endswith(".lmd.json")]
              if (output / "cache").is_dir() else []) < 3:
        assert run.poll() is None, f"the run ended before it was killed: {run.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "no progress"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the launcher and both workers
    run.wait()
    finished = cache_state(output / "cache")
    finished_files = {n.split(".")[0] for n in finished if n.endswith(".lmd.json")}
    assert 3 <= len(finished_files) < 8, finished_files
    assert not (output / "results.json").exists()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    after = cache_state(output / "cache")
    assert {n: after[n] for n in finished} == finished  # nothing finished was recomputed
    recomputed = {n.split(".")[0] for n in set(after) - set(finished) if n.endswith(".lmd.json")}
    assert recomputed == {f"clip{i}" for i in range(8)} - finished_files  # exactly the unfinished files
    report = json.loads((output / "results.json").read_text())
    assert report["summary"]["lmd"]["files"] == 8 and report["skipped"] == []
    assert "lmd:" in again.stdout
