"""Several copies of one talkface command: the process group and the local launcher that `talkface evaluate` and
`talkface generate --jobs` share.

A launcher (`accelerate launch`, `torchrun`, or `launch_local` for `--num-processes N`) starts N copies of the
command and tells each its place through RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Each copy
finds its share of the work with `shard_bounds` (equal contiguous shards, as accelerate's
`split_between_processes` cuts a list), its device with `process_device`, and exchanges Python objects with the
others through `ProcessGroup` (gloo: CPU only, also across machines; models never synchronise, so a GPU job needs
no NCCL set-up).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta

from ..errors import TalkFaceUserError

logger = logging.getLogger(__name__)

#: how long a process waits for the others at a synchronisation point (a shard may take hours on a big job)
DEFAULT_TIMEOUT = timedelta(hours=12)


def launched_processes() -> int:
    """How many processes the launcher started (WORLD_SIZE; 1 when run directly)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def process_rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_main_process() -> bool:
    """True in the process that writes the report and prints (rank 0, or the only process)."""
    return process_rank() == 0


def shard_bounds(count: int, num_shards: int, index: int) -> tuple[int, int]:
    """[start, stop) of shard `index` of `count` items split into `num_shards` contiguous shards whose sizes differ
    by at most one (the first `count % num_shards` shards get one more), as accelerate's
    `split_between_processes` splits a list."""
    size, extra = divmod(count, num_shards)
    start = index * size + min(index, extra)
    return start, start + size + (1 if index < extra else 0)


def process_device(device: str, local_rank: int) -> str:
    """The device of one process: "cuda" (no index) becomes cuda:LOCAL_RANK; anything else is kept."""
    return f"cuda:{local_rank}" if device == "cuda" else device


class ProcessGroup:
    """This process's place among the launched ones, and the few collectives the commands need (gloo).

    With one process (WORLD_SIZE unset or 1) nothing is initialised and the collectives return at once
    (`broadcast` gives the value back, `gather` a one-item list), so a command runs one code path for both.
    """

    def __init__(self, timeout: timedelta = DEFAULT_TIMEOUT):
        self.rank = process_rank()
        self.world_size = launched_processes()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        self.timeout = timeout
        self._created = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __enter__(self):
        if self.world_size == 1:
            return self
        import torch.distributed as dist

        if not dist.is_available():
            raise TalkFaceUserError("this torch build has no torch.distributed; run the command in one process")
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise TalkFaceUserError(f"WORLD_SIZE={self.world_size} but {', '.join(missing)} is not set; start the "
                                    "processes with `accelerate launch`, `torchrun` or the command's "
                                    "--num-processes N")
        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size, timeout=self.timeout)
            self._created = True
        return self

    def __exit__(self, *exc):
        import torch.distributed as dist

        if self._created and dist.is_initialized():
            dist.destroy_process_group()
        return False

    def broadcast(self, value=None):
        """The main process's `value`, on every process."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list | None:
        """Every process's `value`, in rank order, on the main process (None elsewhere)."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        values = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, values, dst=0)
        return values

    def barrier(self):
        if self.world_size == 1:
            return
        import torch.distributed as dist

        dist.barrier()


def exit_launched_copy(code: int):
    """End a copy that a launcher started (WORLD_SIZE > 1) with `code`, once its command has returned: flush the
    standard streams and the logging handlers, then `os._exit`, without the interpreter's teardown.

    That teardown is where a finished copy sometimes died: after its command had returned 0 and its process group
    had been destroyed, a C++ destructor met a thread still joinable (which library's was not traced), and the
    process aborted with "terminate called without an active exception" (SIGABRT, exit -6; about one run in five of
    tests/evaluation/test_evaluate_distributed.py on a 2-core machine). Every output is complete and closed by
    then (commands write through SafeOutput and close their files before returning), so nothing is lost by skipping
    atexit handlers and destructors.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


# ----------------------------------------------------------------------------------------------------------------
# `--num-processes N`: a local launcher
# ----------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_local(argv: list[str], num_processes: int, poll_seconds: float = 0.2) -> int:
    """Run `python -m talkface ARGV` in `num_processes` processes on this machine, as torchrun would (one
    process group over gloo on 127.0.0.1), and return the first non-zero exit code (0 when all succeed).

    When one process fails the others are stopped. Each process gets cpu_count / num_processes torch threads
    unless OMP_NUM_THREADS is set. Only the main process's output reaches stdout.
    """
    if num_processes < 1:
        raise TalkFaceUserError(f"--num-processes must be at least 1, got {num_processes}")
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(num_processes),
               LOCAL_WORLD_SIZE=str(num_processes))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    processes = []
    try:
        for rank in range(num_processes):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "talkface", *argv], env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
                stdout=None if rank == 0 else subprocess.DEVNULL))
        while True:
            codes = [p.poll() for p in processes]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                logger.debug("a process exited with %s; stopping the others", failed[0])
                return failed[0]
            if all(code == 0 for code in codes):
                return 0
            time.sleep(poll_seconds)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def without_option(argv: list[str], flag: str) -> list[str]:
    """argv without `flag VALUE` / `flag=VALUE` (or an abbreviation argparse accepted): the command line of the
    copies `launch_local` starts, from the one that asked for them."""
    result, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name.startswith("--") and len(name) > 2 and flag.startswith(name):
            skip = "=" not in token
            continue
        result.append(token)
    return result


__all__ = ["DEFAULT_TIMEOUT", "ProcessGroup", "exit_launched_copy", "free_port", "is_main_process", "launch_local",
           "launched_processes", "process_device", "process_rank", "shard_bounds", "without_option"]
