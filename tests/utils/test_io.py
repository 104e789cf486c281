"""talkface.utils.io: the one safe-output writer (atomic rename, same-file checks, umask modes, signals, disk full)."""

import errno
import os
import signal
import stat

import numpy as np
import pytest

from talkface.errors import OutputError, TalkFaceUserError
from talkface.utils import io as safe_io


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_write_text_is_atomic_and_follows_the_umask(tmp_path, umask_027):
    target = tmp_path / "scores.json"
    target.write_text("old")
    os.chmod(target, 0o600)
    safe_io.write_text(target, "new")
    assert target.read_text() == "new"
    assert mode(target) == 0o640  # 0666 & ~027, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_an_exception_leaves_neither_output_nor_temporary(tmp_path):
    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError):
        safe_io.write_bytes(tmp_path / "out.bin", fail)
    assert list(tmp_path.iterdir()) == []
    assert safe_io.registered_temporaries() == []


@pytest.mark.parametrize("link", ["same", "hard", "sym"])
def test_an_input_is_never_the_output(tmp_path, link):
    source = tmp_path / "face.mp4"
    source.write_bytes(b"precious")
    out = tmp_path / "out.mp4"
    if link == "same":
        out = source
    else:
        (os.link if link == "hard" else os.symlink)(source, out)
    with pytest.raises(OutputError, match="same file as --face"):
        safe_io.check_output(out, {"--face": source})
    assert source.read_bytes() == b"precious"


def test_file_and_folder_outputs_of_the_wrong_kind(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(OutputError, match="existing folder.*results/scores.json"):
        safe_io.check_output(tmp_path / "results", example="scores.json")
    with pytest.raises(OutputError, match="existing file, not a folder"):
        safe_io.check_output(tmp_path / "model.bin", folder=True)
    with pytest.raises(OutputError, match="does not exist"):
        safe_io.check_output(tmp_path / "missing" / "out.json")
    assert issubclass(OutputError, TalkFaceUserError)


def test_folder_output_is_swapped_in_with_umask_modes(tmp_path, umask_027):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("old")
    keep = tmp_path / "other.txt"
    keep.write_text("keep")
    with pytest.raises(OutputError, match="not empty"):
        safe_io.SafeOutput(out, folder=True)
    replaced = []
    with safe_io.SafeOutput(out, folder=True, replace_folder=replaced.append) as output:
        assert mode(output.tmp_path) == 0o750
        (output.tmp_path / "config.json").write_text("new")
        (output.tmp_path / "sub").mkdir()
        (output.tmp_path / "sub" / "weights").write_bytes(b"w")
        os.chmod(output.tmp_path / "config.json", 0o600)
    assert replaced == [out]
    assert (out / "config.json").read_text() == "new"
    assert (mode(out), mode(out / "sub"), mode(out / "config.json"), mode(out / "sub" / "weights")) == (
        0o750, 0o750, 0o640, 0o640)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "other.txt"]


def test_a_folder_output_may_not_contain_an_input(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "wav2lip.pth").write_bytes(b"checkpoint")
    with pytest.raises(OutputError, match="contains --checkpoint"):
        safe_io.check_output(models, {"--checkpoint": models / "wav2lip.pth"}, folder=True)


def test_disk_full_is_a_user_error_and_leaves_nothing(tmp_path):
    def full(handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="no space left .* free some space or choose another --output"):
        safe_io.write_bytes(tmp_path / "report.md", full, flag="--output")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_removes_the_temporaries_and_exits_128_plus_signum(tmp_path, signum, capfd):
    before = signal.getsignal(signum)
    expected = KeyboardInterrupt if signum == signal.SIGINT else SystemExit
    with pytest.raises(expected) as caught:
        with safe_io.SafeOutput(tmp_path / "out.mp4") as output:
            output.tmp_path.write_bytes(b"half a video")
            assert signal.getsignal(signum) is not before  # the cleanup handler is installed while writing
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # the handler runs between bytecodes of the main thread
                pass
    if expected is SystemExit:
        assert caught.value.code == 128 + signum
        assert f"stopped by {signal.Signals(signum).name}" in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signum) is before  # and the previous handler is back
    assert safe_io.registered_temporaries() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_writer_whose_temporary_a_signal_removed_stops_even_if_the_exception_was_swallowed(tmp_path, signum):
    # the handler's exception can be lost (raised inside a C callback, caught by third-party code); the run then
    # reaches its next write or its commit, which must end it the same way instead of failing on the missing file
    from talkface import media

    expected = KeyboardInterrupt if signum == signal.SIGINT else SystemExit
    frame = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(expected) as caught:
        with media.VideoWriter(tmp_path / "out.mp4", fps=25, width=16, height=16) as writer:
            writer.write(frame)
            try:
                os.kill(os.getpid(), signum)
                for _ in range(1000):
                    pass
            except (SystemExit, KeyboardInterrupt):
                pass  # swallowed
            writer.write(frame)
    if expected is SystemExit:
        assert caught.value.code == 128 + signum
    assert list(tmp_path.iterdir()) == []
    output = safe_io.SafeOutput(tmp_path / "again.txt")  # a later run in the same process is not affected
    output.tmp_path.write_text("x")
    output.commit()
    assert (tmp_path / "again.txt").read_text() == "x"


def test_handlers_are_restored_after_a_normal_write(tmp_path):
    before = {s: signal.getsignal(s) for s in safe_io.CLEANUP_SIGNALS}
    safe_io.write_text(tmp_path / "a.txt", "a")
    assert {s: signal.getsignal(s) for s in safe_io.CLEANUP_SIGNALS} == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_writers_in_other_threads_are_covered_while_the_main_thread_holds_the_handlers(tmp_path, signum, capfd):
    """signal_cleanup_held: a temporary registered by another thread (which cannot install handlers) is removed on
    a signal, and that writer stops at its next check; the handlers come back when the hold ends."""
    import threading

    before = signal.getsignal(signum)
    expected = KeyboardInterrupt if signum == signal.SIGINT else SystemExit
    opened, stopped, outputs = threading.Event(), [], []

    def writer():
        output = safe_io.SafeOutput(tmp_path / "out.bin").__enter__()
        outputs.append(output)
        output.tmp_path.write_bytes(b"half")
        opened.set()
        while True:
            try:
                output.raise_if_stopped()
            except BaseException as err:  # noqa: B036
                stopped.append(type(err))
                output.abort()
                return
            threading.Event().wait(0.01)

    with pytest.raises(expected):
        with safe_io.signal_cleanup_held():
            assert signal.getsignal(signum) is not before
            thread = threading.Thread(target=writer)
            thread.start()
            assert opened.wait(10)
            signal.raise_signal(signum)
    thread.join(10)
    assert stopped == [expected]
    assert list(tmp_path.iterdir()) == [] and safe_io.registered_temporaries() == []
    assert signal.getsignal(signum) is before
    capfd.readouterr()


def test_the_hold_alone_restores_the_handlers():
    before = {s: signal.getsignal(s) for s in safe_io.CLEANUP_SIGNALS}
    with safe_io.signal_cleanup_held():
        with safe_io.signal_cleanup_held():
            assert all(signal.getsignal(s) is not before[s] for s in safe_io.CLEANUP_SIGNALS)
        assert all(signal.getsignal(s) is not before[s] for s in safe_io.CLEANUP_SIGNALS)
    assert {s: signal.getsignal(s) for s in safe_io.CLEANUP_SIGNALS} == before
