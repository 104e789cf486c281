"""Safe output: the one way talkface writes a file or a folder that a user asked for.

Every writer (generate's video, score's JSON, convert's model folder, evaluate's report, cache and plots, the
training data layout) goes through `SafeOutput`, which promises:

* **Nothing half-written.** The content goes to a hidden temporary sibling (`.NAME.partial-XXXXXXXX.ext`, or a
  folder `.NAME.partial-XXXXXXXX`) in the target's own folder and is renamed over the target only once complete.
  On any exception the temporary is deleted, and so it is on SIGINT, SIGTERM and SIGHUP: while a temporary exists,
  handlers are installed (main thread only) that delete every registered temporary and end the process with
  exit code 128 + the signal number (SIGINT raises `KeyboardInterrupt`, which the CLI turns into 130). The
  previous handlers come back when the last temporary is gone. Writers may run in other threads when the main
  thread holds the handlers for them (`signal_cleanup_held()`).
* **Nothing of the user's lost.** The target is checked before any work: an output that is the same file as an
  input (also through a symlink or a hard link), a folder output that contains an input, a file output that is an
  existing folder and a folder output that is an existing file are `TalkFaceUserError`s with one line naming the
  fix. Inputs are never opened for writing.
* **Modes as the user's umask says.** Files get 0666 & ~umask and folders 0777 & ~umask (`mkstemp`/`mkdtemp`
  would make them 0600/0700, unreadable to anyone else sharing the model or the results).
* **A full disk is a user error.** ENOSPC / EDQUOT while writing become one line ("no space left ... free some
  space or choose another --out"), with the temporary removed.

    with SafeOutput(args.out, inputs={"--face": args.face}) as output:
        write_my_file(output.tmp_path)          # moved to args.out when the block ends without an exception
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..errors import OutputError

#: the signals after which no temporary output may stay behind (Ctrl-C, `timeout`/`docker stop`/systemd, a closed
#: terminal or ssh session)
CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


# ----------------------------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------------------------


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a short window other threads could see)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    return 0o777 & ~current_umask()


def apply_umask_modes(path) -> None:
    """chmod `path` (a file, or a folder and everything in it) to what a plain `open`/`mkdir` would have made."""
    path = Path(path)
    files, folders = file_mode(), folder_mode()
    if not path.is_dir():
        os.chmod(path, files)
        return
    os.chmod(path, folders)
    for root, dirnames, filenames in os.walk(path):
        for name in dirnames:
            os.chmod(os.path.join(root, name), folders)
        for name in filenames:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, files)


# ----------------------------------------------------------------------------------------------------------------
# Checks made before any work
# ----------------------------------------------------------------------------------------------------------------


def _labelled(inputs) -> list[tuple[str, Path]]:
    """inputs as (label, path): a mapping flag -> path (or list of paths), or an iterable of paths ("an input")."""
    if inputs is None:
        return []
    items = inputs.items() if isinstance(inputs, Mapping) else (("input", value) for value in inputs)
    pairs = []
    for label, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs += [(label, Path(v).expanduser()) for v in values if v is not None and not _is_remote(v)]
    return pairs


def _is_remote(value) -> bool:
    return isinstance(value, str) and "://" in value


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # follows symlinks, and compares (st_dev, st_ino): hard links too
    except OSError:
        return False


def _contains(folder: Path, path: Path) -> bool:
    try:
        real_folder, real_path = folder.resolve(), path.resolve()
    except OSError:
        return False
    return real_path == real_folder or real_folder in real_path.parents


def check_output(path, inputs=None, flag: str = "--out", folder: bool = False, example: str | None = None) -> Path:
    """Raise `OutputError` (one line naming the fix) unless `path` may be written without harming an input.

    inputs: the files the run reads, as {flag: path or [paths]} (named in the message) or a list of paths.
    folder: the output is a folder (convert's model folder, evaluate's --output-dir) rather than a file.
    example: a file name to suggest when a file output names an existing folder (default: result + the suffix).
    Returns `path` as a Path (with ~ expanded).
    """
    path = Path(path).expanduser()
    for label, source in _labelled(inputs):
        if folder and path.is_dir() and _contains(path, source):
            which = "is" if _same_file(path, source) else "contains"
            raise OutputError(f"{flag} {path} {which} {label} {source}; choose an output folder that holds none "
                              "of the inputs")
        if path.exists() and _same_file(path, source):
            raise OutputError(f"{flag} {path} is the same file as {label} {source}; writing it would destroy the "
                              f"input: choose another {flag}")
    if folder:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{flag} {path} is an existing file, not a folder; choose a new folder name such as "
                              f"{path.with_name(path.stem + '_model')}")
    elif path.is_dir():
        raise OutputError(f"{flag} {path} is an existing folder; pass a file name inside it such as "
                          f"{path / (example or 'result' + path.suffix)}")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it or choose another {flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {parent} is not writable; choose another {flag}")
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"output file {path} exists and is not writable; choose another {flag}")
    return path


def disk_full_error(err: OSError, path, flag: str = "--out") -> OutputError | None:
    """The user error for an OSError that means the disk is full (None for any other error)."""
    if getattr(err, "errno", None) in _DISK_FULL:
        where = Path(path).expanduser().parent
        return OutputError(f"no space left on the disk holding {where} while writing {path}; nothing was written: "
                           f"free some space or choose another {flag}")
    return None


# ----------------------------------------------------------------------------------------------------------------
# Temporaries removed on signals
# ----------------------------------------------------------------------------------------------------------------

_lock = threading.RLock()
_temporaries: dict[str, None] = {}  # insertion-ordered set of paths to delete on a signal
_previous_handlers: dict[int, object] = {}
# temporaries a signal removed -> that signal: their writers must stop even where the handler's exception was
# swallowed (raised inside a C callback, caught by third-party code) and the run carried on to its next write
_removed_by_signal: dict[str, int] = {}
_holds = 0  # main-thread `signal_cleanup_held()` blocks open: the handlers stay while any is


def remove_path(path) -> None:
    """Delete a file or a folder tree; silent when it is already gone."""
    path = str(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _on_signal(signum, frame):
    with _lock:
        for path in list(_temporaries):
            remove_path(path)
            _removed_by_signal[path] = signum
        _temporaries.clear()
        previous = _previous_handlers.get(signum)
        _restore_handlers()
    if callable(previous) and previous is not signal.default_int_handler:
        previous(signum, frame)  # someone else's handler (a launcher, a web server): let it decide what happens
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    name = signal.Signals(signum).name
    os.write(2, f"talkface: stopped by {name}; unfinished outputs were removed\n".encode())
    raise SystemExit(128 + signum)


def _install_handlers():
    if _previous_handlers or threading.current_thread() is not threading.main_thread():
        return  # already installed, or not allowed (signal handlers belong to the main thread)
    for signum in CLEANUP_SIGNALS:
        try:
            _previous_handlers[signum] = signal.signal(signum, _on_signal)
        except (ValueError, OSError):  # e.g. an embedding interpreter that owns the signals
            pass


def _restore_handlers():
    if not _previous_handlers or threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in _previous_handlers.items():
        if signal.getsignal(signum) is _on_signal:  # someone installed their own since: leave theirs
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    _previous_handlers.clear()


def register_temporary(path) -> None:
    """Delete `path` if the process gets SIGINT / SIGTERM / SIGHUP before `unregister_temporary(path)`."""
    with _lock:
        _temporaries[str(path)] = None
        _install_handlers()


def unregister_temporary(path) -> None:
    with _lock:
        _temporaries.pop(str(path), None)
        if not _temporaries and not _holds:
            _restore_handlers()


@contextlib.contextmanager
def signal_cleanup_held():
    """Install the cleanup handlers now (call it in the main thread) and keep them until the block ends, so writers
    opened and closed in other threads (whose registrations cannot install handlers) are covered too."""
    global _holds
    with _lock:
        _holds += 1
        _install_handlers()
    try:
        yield
    finally:
        with _lock:
            _holds -= 1
            if not _holds and not _temporaries:
                _restore_handlers()


def raise_if_removed_by_signal(path) -> None:
    """Raise what the signal handler raised (KeyboardInterrupt for SIGINT, else SystemExit(128 + signum)) if a
    signal removed the temporary `path`; nothing otherwise."""
    signum = _removed_by_signal.get(str(path))
    if signum is None:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def registered_temporaries() -> list[str]:
    with _lock:
        return list(_temporaries)


class _SignalsHeld:
    """Hold the cleanup signals during a few renames (delivered right after), so a swap is never cut in half."""

    def __enter__(self):
        self._mask = None
        if hasattr(signal, "pthread_sigmask"):
            self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, CLEANUP_SIGNALS)
        return self

    def __exit__(self, *exc):
        if self._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        return False


# ----------------------------------------------------------------------------------------------------------------
# The writer
# ----------------------------------------------------------------------------------------------------------------


class SafeOutput:
    """A file (or folder) being written: a temporary sibling, moved over `path` by `commit()`.

    Args:
        path: the output the user asked for.
        inputs: what the run reads ({flag: path} or paths): refused as outputs, and a folder output may not contain
            them.
        flag: how the output was given, for messages ("--out", "--output").
        folder: write a folder (`tmp_path` is an empty folder to fill) instead of a file (`tmp_path` does not exist
            yet; create it).
        replace_folder: for a folder output that exists and is not empty, a callable(path) that raises when that
            folder must not be replaced (None: never replace a non-empty folder).
        suffix: the temporary file's extension (default: the output's, so format-sniffing writers still work).
        example: see `check_output`.

    As a context manager it commits when the block ends normally and aborts on an exception; OSErrors that mean a
    full disk become `OutputError`s either way.
    """

    def __init__(self, path, inputs=None, flag: str = "--out", folder: bool = False,
                 replace_folder: Callable[[Path], None] | None = None, suffix: str | None = None,
                 example: str | None = None):
        self.path = check_output(path, inputs, flag=flag, folder=folder, example=example)
        self.flag, self.folder = flag, folder
        if folder and self.path.is_dir() and any(self.path.iterdir()):
            if replace_folder is None:
                raise OutputError(f"{flag} {self.path} exists and is not empty; choose another {flag}")
            replace_folder(self.path)
        tag = uuid.uuid4().hex[:8]
        if folder:
            self.tmp_path = self.path.with_name(f".{self.path.name}.partial-{tag}")
        else:
            ext = self.path.suffix if suffix is None else suffix
            self.tmp_path = self.path.with_name(f".{self.path.stem}.partial-{tag}{ext}")
        self.done = False
        register_temporary(self.tmp_path)
        try:
            if folder:
                os.mkdir(self.tmp_path)
        except OSError as err:
            self.abort()
            raise disk_full_error(err, self.path, flag) or OutputError(
                f"cannot create {self.path} ({err.strerror}); choose another {flag}") from err

    def __enter__(self) -> SafeOutput:
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
            return False
        self.abort()
        if isinstance(exc, OSError):
            translated = disk_full_error(exc, self.path, self.flag)
            if translated is not None:
                raise translated from exc
        return False

    def raise_if_stopped(self) -> None:
        """Stop the writer (SystemExit / KeyboardInterrupt, as the handler did) once a signal removed the temporary."""
        raise_if_removed_by_signal(self.tmp_path)

    def commit(self) -> Path:
        """Move the finished temporary over `path` (modes per umask) and return `path`."""
        if self.done:
            return self.path
        self.raise_if_stopped()
        try:
            if not self.tmp_path.exists():
                raise FileNotFoundError(f"the writer produced nothing at {self.tmp_path}")
            apply_umask_modes(self.tmp_path)
            if self.folder and self.path.exists():
                self._swap_folder()
            else:
                with _SignalsHeld(), _lock:  # the lock: a handler running meanwhile in the main thread waits
                    os.replace(self.tmp_path, self.path)
                    self._forget()
        except BaseException as err:
            self.abort()
            if isinstance(err, OSError) and disk_full_error(err, self.path, self.flag):
                raise disk_full_error(err, self.path, self.flag) from err
            raise
        return self.path

    def _swap_folder(self):
        """Replace an existing folder by the new one: old -> hidden sibling, new -> path, then delete the old one."""
        old = self.path.with_name(f".{self.path.name}.replaced-{uuid.uuid4().hex[:8]}")
        with _SignalsHeld():
            if self.path.is_dir() and not any(self.path.iterdir()):
                os.rmdir(self.path)
                os.rename(self.tmp_path, self.path)
                self._forget()
                return
            os.rename(self.path, old)
            try:
                os.rename(self.tmp_path, self.path)
            except BaseException:
                os.rename(old, self.path)  # put the user's folder back as it was
                raise
            self._forget()
            register_temporary(old)  # now disposable: a signal during the deletion still removes it
        try:
            remove_path(old)
        finally:
            unregister_temporary(old)

    def _forget(self):
        self.done = True
        unregister_temporary(self.tmp_path)

    def abort(self) -> None:
        """Delete the temporary; nothing appears at `path` (an existing `path` is left as it was)."""
        if not self.done:
            remove_path(self.tmp_path)
            self._forget()


# ----------------------------------------------------------------------------------------------------------------
# Shorthands
# ----------------------------------------------------------------------------------------------------------------


def write_bytes(path, write: Callable, inputs=None, flag: str = "--out", make_parents: bool = False) -> Path:
    """Write a file through `write(binary_file_object)`, atomically (see `SafeOutput`)."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    with SafeOutput(path, inputs=inputs, flag=flag) as output, open(output.tmp_path, "xb") as handle:
        write(handle)
    return output.path


def write_text(path, text: str, inputs=None, flag: str = "--out", make_parents: bool = False) -> Path:
    return write_bytes(path, lambda handle: handle.write(text.encode("utf-8")), inputs=inputs, flag=flag,
                       make_parents=make_parents)


def write_json(path, data, inputs=None, flag: str = "--output", default=None, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent, default=default) + "\n", inputs=inputs, flag=flag)


def write_with(path, writer: Callable[[str], object], inputs=None, flag: str = "--out",
               make_parents: bool = False) -> Path:
    """Write a file with a library function that takes a path (np.save, wavfile.write, savefig), atomically."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    with SafeOutput(path, inputs=inputs, flag=flag) as output:
        writer(str(output.tmp_path))
    return output.path


def inputs_of(values: Iterable) -> list[Path]:
    """Local paths among `values` (strings or paths; None and URLs dropped), for `inputs=`."""
    return [path for _, path in _labelled(list(values))]


__all__ = ["CLEANUP_SIGNALS", "OutputError", "SafeOutput", "apply_umask_modes", "check_output", "current_umask",
           "disk_full_error", "file_mode", "folder_mode", "inputs_of", "register_temporary",
           "registered_temporaries", "remove_path", "unregister_temporary", "write_bytes", "write_json",
           "write_text", "write_with"]
