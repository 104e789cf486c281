"""Evaluation over several processes: `accelerate launch -m talkface evaluate ...`, `torchrun -m talkface evaluate`
or `talkface evaluate --num-processes N`.

The launcher starts N copies of the command and tells each its place (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT: what torchrun and `accelerate launch` set). Then:

1. Every process pairs the files (the same sorted list) and loads the models once, on its own device (`--device
   cuda` means cuda:LOCAL_RANK).
2. The main process finds the pairs that still need work (the others are complete in REPORT_DIR/cache) and
   splits them into equal contiguous shards, one per process.
3. Each process scores its shard; every per-file result goes to the cache the moment it is done, so a killed run
   started again recomputes only the files that were not finished.
4. The results (and, without a cache, the arrays data-set metrics keep) are gathered on the main process, which
   assembles exactly the report one process would: the same rows in the same order, FID and corpus WER computed
   once over all files, the same results.json, results.csv, report.md and plots. Every process returns it.

Processes talk over gloo (CPU, also on multi-node clusters: only Python objects are exchanged, the models never
synchronise), so a GPU job needs no NCCL set-up; REPORT_DIR must be on a file system all machines see.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta

from ..errors import TalkFaceUserError

logger = logging.getLogger(__name__)

#: how long a process waits for the others at a synchronisation point (a shard may take hours on a big test set)
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
    """This process's place among the launched ones, and the few collectives the evaluation needs (gloo)."""

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
        import torch.distributed as dist

        if not dist.is_available():
            raise TalkFaceUserError("this torch build has no torch.distributed; run talkface evaluate in one process")
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise TalkFaceUserError(f"WORLD_SIZE={self.world_size} but {', '.join(missing)} is not set; start the "
                                    "processes with `accelerate launch`, `torchrun` or `talkface evaluate "
                                    "--num-processes N`")
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
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list | None:
        """Every process's `value`, in rank order, on the main process (None elsewhere)."""
        import torch.distributed as dist

        values = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, values, dst=0)
        return values

    def barrier(self):
        import torch.distributed as dist

        dist.barrier()


def distributed_evaluate(pairs, unpaired, metrics, output, options, progress: bool):
    """`evaluate` in one of several launched processes (see the module docstring); returns the merged report."""
    from .evaluate import (
        EvaluationContext,
        _FileProgressBar,
        assemble_report,
        check_available,
        prepare_output,
        score_pairs,
    )
    from .report import write_report

    with ProcessGroup() as group:
        output_dir, cache_dir = prepare_output(output, options)
        local_options = dataclasses.replace(options, device=process_device(options.device, group.local_rank))
        context = EvaluationContext(local_options, cache_dir)
        try:
            # models once per process, on its own device; a metric unavailable anywhere is unavailable
            found = group.gather(check_available(metrics, pairs, context))
            unavailable = group.broadcast(_merge_unavailable(metrics, found) if group.is_main else None)
            runnable = [m for m in metrics if m not in unavailable]
            # the main process decides what is left to do, before anyone writes to the cache
            todo = group.broadcast(_unfinished(pairs, runnable, context) if group.is_main else None)
            start, stop = shard_bounds(len(todo), group.world_size, group.rank)
            share = todo[start:stop]
            logger.info("process %d of %d: %d of %d files to score", group.rank, group.world_size, len(share),
                        len(pairs))
            bar = _FileProgressBar(len(share), enabled=progress and group.is_main)
            try:
                entries = score_pairs([pairs[i] for i in share], runnable, context, bar)
            finally:
                bar.close()
            gathered = group.gather((share, entries, context.kept_arrays()))
            report = None
            if group.is_main:
                merged = [None] * len(pairs)
                for indices, shard_entries, arrays in gathered:
                    for index, pair_entries in zip(indices, shard_entries):
                        merged[index] = pair_entries
                    context.keep_arrays(arrays)
                done = [i for i, pair_entries in enumerate(merged) if pair_entries is None]
                # complete in the cache before the run: read from it (nothing is recomputed)
                for index, pair_entries in zip(done, score_pairs([pairs[i] for i in done], runnable, context)):
                    merged[index] = pair_entries
                report = assemble_report(metrics, pairs, merged, unavailable, context, unpaired,
                                         settings=dataclasses.asdict(options))
                report.output_dir = output_dir
                if output_dir is not None:
                    write_report(report, output_dir, options)
        finally:
            context.close()
        return group.broadcast(report)


def _merge_unavailable(metrics, found: list[dict]) -> dict:
    """metric -> reason, for metrics unavailable in any process (first reason; in the order of `metrics`)."""
    merged = {}
    for name in metrics:
        for unavailable in found:
            if name in unavailable:
                merged[name] = unavailable[name]
                break
    return merged


def _unfinished(pairs, runnable, context) -> list[int]:
    """Indices of the pairs with a metric whose result is not in the cache (all of them without a cache)."""
    from ..metrics import get_metric
    from .cache import cache_key, cache_read

    if context.cache_dir is None:
        return list(range(len(pairs)))
    todo = []
    for index, pair in enumerate(pairs):
        for name in runnable:
            metric = get_metric(name)
            if cache_read(context.cache_dir, pair.stem, metric, cache_key(metric, pair, context.options)) is None:
                todo.append(index)
                break
    return todo


# ----------------------------------------------------------------------------------------------------------------
# `talkface evaluate --num-processes N`: a local launcher
# ----------------------------------------------------------------------------------------------------------------


def _free_port() -> int:
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
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(num_processes),
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
