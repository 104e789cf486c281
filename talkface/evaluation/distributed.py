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

# the process machinery is shared with `talkface generate --jobs`; its names stay importable from here
from ..utils.distributed import (  # noqa: F401
    DEFAULT_TIMEOUT,
    ProcessGroup,
    is_main_process,
    launch_local,
    launched_processes,
    process_device,
    process_rank,
    shard_bounds,
)

logger = logging.getLogger(__name__)


def distributed_evaluate(pairs, unpaired, metrics, output, options, progress: bool, require_all: bool = False):
    """`evaluate` in one of several launched processes (see the module docstring); returns the merged report."""
    from .evaluate import (
        EvaluationContext,
        _FileProgressBar,
        assemble_report,
        check_available,
        prepare_output,
        raise_unavailable,
        report_settings,
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
            if require_all:  # every process has the same list: all stop together
                raise_unavailable(unavailable)
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
                                         settings=report_settings(options))
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
