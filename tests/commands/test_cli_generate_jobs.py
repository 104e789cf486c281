"""`talkface generate --jobs jobs.csv`: a bad row, a row already done and two good rows give the right results CSV
and outputs, in one process and in two (gloo on CPU); a bad jobs file is one line and exit code 2."""

import csv
import hashlib
import os
import shutil

import numpy as np
import pytest

from talkface import media
from talkface.cli import main
from tests.commands.test_cli_generate import inputs  # noqa: F401  (module fixture: tiny Wav2Lip, face, speech)
from tests.utils import REPO_ROOT

RESULT_COLUMNS = ["row", "face", "audio", "out", "status", "frames", "seconds", "error"]


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    # the processes `--num-processes` starts import this checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def read_results(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == RESULT_COLUMNS
        return list(reader)


def comment(path):
    import av

    with av.open(str(path)) as container:
        return container.metadata.get("comment", "")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def batch(inputs, tmp_path):  # noqa: F811
    """A jobs folder: inputs beside the CSV (relative paths), an output already there, one row with a missing face
    and one with an option value the parser refuses."""
    folder = tmp_path / "batch"
    (folder / "out").mkdir(parents=True)
    for name in ("face.mp4", "speech.wav", "black.mp4"):
        shutil.copy(inputs / name, folder / name)
    (folder / "out" / "done.mp4").write_bytes(b"made by an earlier run")
    jobs = write_csv(folder / "jobs.csv", [
        ["face", "audio", "out", "pads", "blend", "fps"],
        ["face.mp4", "speech.wav", "out/a.mp4", "0 12 2 2", "hard", ""],      # good
        ["missing.mp4", "speech.wav", "out/missing.mp4", "", "", ""],          # bad: no such face
        ["face.mp4", "speech.wav", "out/done.mp4", "", "", ""],                # done before
        ["face.mp4", "speech.wav", "out/b.mp4", "", "", "20"],                 # good, its own fps
        ["face.mp4", "speech.wav", "out/c.mp4", "", "sparkle", ""],            # bad: unknown blend mode
        ["black.mp4", "speech.wav", "out/d.mp4", "", "", ""],                  # bad: no face in the video
        ["face.mp4", "speech.wav", "face.mp4", "", "", ""],                    # bad: out is its own face input
    ])
    return folder, jobs


def single_command_error(inputs, capture, *flags):  # noqa: F811
    """The one line `talkface generate` prints for these flags (without the 'talkface: error: ' prefix)."""
    argv = ["generate", "--no-progress", "--device", "cpu", "--model", str(inputs / "tiny_wav2lip"), *flags]
    capture.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse refuses a flag value itself
        code = exit.code
    assert code == 2
    return capture.readouterr().err.strip().splitlines()[-1].split("error: ", 1)[1]


@pytest.mark.parametrize("processes, batch_files", [(1, "auto"), (2, "auto"), (1, "2"), (2, "2")])
def test_jobs_give_the_right_results_and_outputs(inputs, batch, capfd, processes, batch_files):  # noqa: F811
    # capfd: with two processes the main one is a child whose output goes to file descriptor 1
    # batch_files 2: rows in flight two at a time, sharing generator calls (the same CSV and outputs)
    folder, jobs = batch
    before = {name: digest(folder / name) for name in ("face.mp4", "speech.wav", "black.mp4", "jobs.csv",
                                                      "out/done.mp4")}
    argv = ["generate", "--jobs", str(jobs), "--model", str(inputs / "tiny_wav2lip"), "--device", "cpu",
            "--no-progress", "--batch-size", "8", "--batch-files", batch_files]
    if processes > 1:
        argv += ["--num-processes", str(processes)]
    assert main(argv) == 1  # a row failed; the others ran
    out = capfd.readouterr().out
    results = read_results(folder / "jobs.results.csv")  # default: beside the jobs file
    assert [r["row"] for r in results] == ["1", "2", "3", "4", "5", "6", "7"]
    assert [r["status"] for r in results] == ["done", "failed", "skipped", "done", "failed", "failed", "failed"]
    assert [r["out"] for r in results] == ["out/a.mp4", "out/missing.mp4", "out/done.mp4", "out/b.mp4", "out/c.mp4",
                                           "out/d.mp4", "face.mp4"]
    assert [r["frames"] for r in results] == ["15", "", "", "12", "", "", ""]
    assert float(results[0]["seconds"]) > 0 and float(results[3]["seconds"]) > 0
    assert float(results[1]["seconds"]) >= 0 and results[2]["seconds"] == results[4]["seconds"] == ""
    assert results[0]["error"] == results[2]["error"] == results[3]["error"] == ""
    if processes == 1:
        # the same one line the single command prints for that input
        missing = folder / "missing.mp4"
        assert results[1]["error"] == single_command_error(
            inputs, capfd, "--face", str(missing), "--audio", str(folder / "speech.wav"), "--out",
            str(folder / "out" / "x.mp4"))
        assert results[4]["error"] == single_command_error(
            inputs, capfd, "--face", str(folder / "face.mp4"), "--audio", str(folder / "speech.wav"), "--out",
            str(folder / "out" / "x.mp4"), "--blend", "sparkle")
        assert results[5]["error"] == single_command_error(
            inputs, capfd, "--face", str(folder / "black.mp4"), "--audio", str(folder / "speech.wav"), "--out",
            str(folder / "out" / "x.mp4"))
        assert results[6]["error"] == single_command_error(
            inputs, capfd, "--face", str(folder / "face.mp4"), "--audio", str(folder / "speech.wav"), "--out",
            str(folder / "face.mp4"))
    assert "missing.mp4" in results[1]["error"] and "not found" in results[1]["error"]
    assert "sparkle" in results[4]["error"] and "--blend" in results[4]["error"]
    assert "no face" in results[5]["error"] and "same file as --face" in results[6]["error"]
    assert "7 rows: 2 done, 1 skipped, 4 failed" in out
    for name, frames, fps in (("a.mp4", 15, 25.0), ("b.mp4", 12, 20.0)):
        info = media.probe(folder / "out" / name)
        assert info.has_audio and info.num_frames == frames and info.fps == fps
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a.mp4", "b.mp4", "done.mp4"]  # nothing partial
    assert {name: digest(folder / name) for name in before} == before  # inputs and the done row untouched
    assert sorted(p.name for p in folder.iterdir()) == ["black.mp4", "face.mp4", "jobs.csv", "jobs.results.csv",
                                                        "out", "speech.wav"]


def test_rows_batched_across_files_write_what_one_at_a_time_writes(inputs, tmp_path, capsys):  # noqa: F811
    """--batch-files 3 (one row with --overlap on, one row's own fps and pads) against --batch-files 1: the same
    results and, frame for frame, the same videos (fp32; the tiny Wav2Lip's values do not move with the batch)."""
    for name in ("face.mp4", "speech.wav", "black.mp4"):
        shutil.copy(inputs / name, tmp_path / name)
    rows = [["face", "audio", "out", "fps", "pads", "overlap"],
            ["face.mp4", "speech.wav", "{k}/a.mp4", "", "", ""],
            ["black.mp4", "speech.wav", "{k}/bad.mp4", "", "", ""],
            ["face.mp4", "speech.wav", "{k}/b.mp4", "20", "0 5 0 0", ""],
            ["face.mp4", "speech.wav", "{k}/c.mp4", "", "", "on"],
            ["face.mp4", "speech.wav", "{k}/d.mp4", "30", "", ""]]
    written = {}
    for files in ("1", "3"):
        jobs = write_csv(tmp_path / f"jobs{files}.csv", [[cell.format(k=files) for cell in row] for row in rows])
        (tmp_path / files).mkdir()
        argv = ["generate", "--jobs", str(jobs), "--model", str(inputs / "tiny_wav2lip"), "--device", "cpu",
                "--no-progress", "--precision", "fp32", "--batch-size", "4", "--batch-files", files]
        assert main(argv) == 1
        results = read_results(tmp_path / f"jobs{files}.results.csv")
        written[files] = [(r["status"], r["frames"], r["error"]) for r in results]
        assert [r["status"] for r in results] == ["done", "failed", "done", "done", "done"]
        assert "no face" in results[1]["error"]
    assert written["1"] == written["3"]
    for name in ("a", "b", "c", "d"):
        assert np.array_equal(media.read_frames(tmp_path / "1" / f"{name}.mp4"),
                              media.read_frames(tmp_path / "3" / f"{name}.mp4")), name
    assert sorted(p.name for p in (tmp_path / "3").iterdir()) == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    capsys.readouterr()


def test_a_second_run_skips_what_is_done_and_overwrite_redoes_it(inputs, batch, tmp_path, capsys):  # noqa: F811
    folder, jobs = batch
    good = write_csv(folder / "good.csv", [["face", "audio", "out", "box", "precision"],
                                           ["face.mp4", "speech.wav", "out/a.mp4", "40,40,200,220", "fp32"],
                                           ["face.mp4", "speech.wav", "out/done.mp4", "", ""]])
    argv = ["generate", "--jobs", str(good), "--model", str(inputs / "tiny_wav2lip"), "--device", "cpu",
            "--no-progress", "--precision", "bf16", "--results", str(tmp_path / "first.csv")]
    assert main(argv) == 0
    first = read_results(tmp_path / "first.csv")
    assert [r["status"] for r in first] == ["done", "skipped"]
    assert "precision: fp32" in comment(folder / "out" / "a.mp4")  # the row's own precision
    made = digest(folder / "out" / "a.mp4")
    argv[-1] = str(tmp_path / "second.csv")
    assert main(argv) == 0
    assert [r["status"] for r in read_results(tmp_path / "second.csv")] == ["skipped", "skipped"]
    assert digest(folder / "out" / "a.mp4") == made
    argv[-1] = str(tmp_path / "third.csv")
    assert main(argv + ["--overwrite"]) == 0
    third = read_results(tmp_path / "third.csv")
    assert [r["status"] for r in third] == ["done", "done"] and third[1]["frames"] == "15"
    assert media.probe(folder / "out" / "done.mp4").num_frames == 15  # the placeholder was replaced
    assert "precision: bf16" in comment(folder / "out" / "done.mp4")  # the command line's
    assert "2 rows: 2 done, 0 skipped, 0 failed" in capsys.readouterr().out


BAD_JOBS_FILES = {
    "unknown column": ([["face", "audio", "out", "blnd"], ["f.mp4", "s.wav", "o.mp4", "hard"]], "unknown column 'blnd'"),
    "missing out column": ([["face", "audio"], ["f.mp4", "s.wav"]], "no out column"),
    "per-process flag": ([["face", "audio", "out", "device"], ["f.mp4", "s.wav", "o.mp4", "cuda"]], "--device"),
    "same output twice": ([["face", "audio", "out"], ["f.mp4", "s.wav", "o.mp4"], ["g.mp4", "s.wav", "./o.mp4"]],
                          "rows 1 and 2 both write"),
    "header only": ([["face", "audio", "out"]], "no rows"),
    "empty": ([], "is empty"),
}


@pytest.mark.parametrize("case", list(BAD_JOBS_FILES))
def test_a_bad_jobs_file_is_one_line_and_exit_2(inputs, tmp_path, capsys, case):  # noqa: F811
    rows, expected = BAD_JOBS_FILES[case]
    jobs = write_csv(tmp_path / "jobs.csv", rows)
    assert main(["generate", "--jobs", str(jobs), "--model", str(inputs / "tiny_wav2lip"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("talkface: error:")]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.csv"]  # no results file, nothing generated


@pytest.mark.parametrize("processes", [1, 2])
def test_a_model_that_cannot_load_stops_every_process(inputs, tmp_path, capfd, processes):  # noqa: F811
    shutil.copy(inputs / "speech.wav", tmp_path / "speech.wav")
    jobs = write_csv(tmp_path / "jobs.csv", [["face", "audio", "out"], ["f.mp4", "speech.wav", "o.mp4"],
                                              ["g.mp4", "speech.wav", "p.mp4"]])
    argv = ["generate", "--jobs", str(jobs), "--model", str(inputs / "not_a_generator"), "--device", "cpu",
            "--num-processes", str(processes)]
    assert main(argv) == 2
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("talkface: error:")]
    assert len(lines) == 1 and "not a generator" in lines[0] and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.csv", "speech.wav"]


@pytest.mark.parametrize("flags, expected", [
    (["--jobs", "nowhere/jobs.csv"], "not found"),
    (["--jobs", "@jobs.csv", "--face", "f.mp4"], "leave out --face"),
    (["--jobs", "@jobs.csv", "--results", "@jobs.csv"], "same file as --jobs"),
    (["--jobs", "@jobs.csv", "--results", "@nowhere/results.csv"], "does not exist"),
    (["--jobs", "@jobs.csv", "--num-processes", "0"], "at least 1"),
    (["--jobs", "@jobs.csv", "--batch-files", "0"], "--batch-files takes a whole number >= 1 or auto"),
    (["--face", "f.mp4", "--audio", "s.wav", "--out", "o.mp4", "--batch-files", "2"], "only work with --jobs"),
    (["--face", "f.mp4", "--audio", "s.wav", "--out", "o.mp4", "--overwrite"], "only work with --jobs"),
    (["--face", "f.mp4", "--audio", "s.wav"], "required: --out"),
])
def test_command_line_errors(inputs, tmp_path, capsys, flags, expected):  # noqa: F811
    write_csv(tmp_path / "jobs.csv", [["face", "audio", "out"], ["f.mp4", "s.wav", "o.mp4"]])
    flags = [str(tmp_path / f[1:]) if f.startswith("@") else f for f in flags]
    assert main(["generate", "--model", str(inputs / "tiny_wav2lip"), "--device", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and expected in err.strip().splitlines()[-1], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.csv"]


def test_row_cells_become_the_generate_flags(tmp_path):
    from talkface.commands.generate_jobs import Job, RowError, option_actions, row_arguments, row_parser

    parser = row_parser()
    actions = option_actions(parser)
    args = parser.parse_args(["--model", "models/wav2lip", "--no-align-roll", "--fps", "30"])
    (tmp_path / "models" / "mine").mkdir(parents=True)

    def parse(**cells):
        return row_arguments(Job(1, {"face": "f.mp4", "audio": "s.wav", "out": "o.mp4", **cells}, tmp_path), args,
                             parser, actions)

    row = parse(pads="0,20, 1 2", **{"batch-size": "4", "no-align-roll": "no"})
    assert row.pads == [0, 20, 1, 2] and row.batch_size == 4 and row.align_roll is True and row.fps == 30
    assert (row.face, row.out, row.model) == (str(tmp_path / "f.mp4"), str(tmp_path / "o.mp4"), "models/wav2lip")
    row = parse(fps="", **{"no-align-roll": "yes", "model": "models/mine"})  # empty cell: the command line's
    assert row.align_roll is False and row.fps == 30 and row.model == str(tmp_path / "models" / "mine")
    assert parse(model="someone/wav2lip").model == "someone/wav2lip"  # not a path beside the CSV: a Hub id
    for cells, expected in [({"no-align-roll": "maybe"}, "yes or no"), ({"pads": "1 2 3"}, "expected 4"),
                            ({"fps": "fast"}, "invalid float value"), ({"face": ""}, "has no face")]:
        with pytest.raises(RowError, match=expected):
            parse(**cells)
    assert args.fps == 30 and args.align_roll is False  # the command line's arguments are not changed
