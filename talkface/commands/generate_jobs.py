"""`talkface generate --jobs jobs.csv --model M`: many lip-syncs with the model loaded once.

    face,audio,out,blend,pads
    actors/anna.mp4,speech/en_01.wav,out/anna_en_01.mp4,,
    actors/ben.mp4,speech/en_01.wav,out/ben_en_01.mp4,hard,0 20 0 0

Columns: `face`, `audio` and `out` (required), and any generate flag by its long name without the dashes (`fps`,
`batch-size` or `batch_size`, `pads`, `box`, `blend`, `precision`, `model`, ...). An empty cell, or a missing
column, takes the value of the command line. Flags with several values (`pads`, `box`) take them separated by
spaces or commas; on/off flags (`no-align-roll`) take yes or no. Relative paths are relative to the CSV's folder (`model`, `s3fd` and `enhance-model` only when
that path exists: otherwise they name a Hub id).

Each row is parsed by the generate command's own parser and checked by the same code, so a bad row fails with
the one line `talkface generate` prints for it. A row whose `out` exists is skipped (`--overwrite` redoes it); a
failing row is recorded and the next one runs. The results CSV (default JOBS.results.csv beside the jobs file,
`--results PATH`) lists every row: row (1 = the first line after the header), face, audio, out as written in the
jobs file, status (done / skipped / failed), frames, seconds and the error.

Exit codes: 0 when every row is done or skipped, 1 when any row failed (the others are still done), 2 when the
jobs file or the command line is wrong (nothing is generated).

Several processes (`--num-processes N` on one machine, or `accelerate launch -m talkface generate --jobs ...`):
the main process decides which rows need work (before anything is written) and splits them into equal contiguous
shards; each process loads the model once on its own device (`--device cuda` and `auto` on a GPU machine become
cuda:LOCAL_RANK) and runs its share; the main process gathers the results and writes the results CSV in row order.
The machinery is `talkface.utils.distributed`, the one `talkface evaluate` uses.

Cross-file batching (`--batch-files K`, default auto: 4 on CUDA, 1 elsewhere): each process keeps K of its rows in
flight, and every generator call takes the next batch of face crops of each of them
(`LipSyncPipeline.generate_many`), so a GPU sees K times larger batches. Rows that need another pipeline (model,
precision, enhancer) or another `overlap` are batched among themselves. Each row is still parsed, checked, written
and recorded on its own: the results CSV, skips, exit codes and sharding do not change, and a row's video is the
one it gets alone (docs/generation.md says how close on each device).
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TalkFaceUserError

logger = logging.getLogger(__name__)

JOB_COLUMNS = ("face", "audio", "out")
RESULT_COLUMNS = ("row", "face", "audio", "out", "status", "frames", "seconds", "error")
#: generate flags that are the same for every row (they belong to the command or the process), with the reason
NOT_PER_ROW = {
    "device": "each process has one device; give --device on the command line",
    "no-progress": "give --no-progress on the command line",
    "jobs": "a jobs file cannot name another", "results": "give --results on the command line",
    "overwrite": "give --overwrite on the command line",
    "num-processes": "give --num-processes on the command line",
    "batch-files": "rows share generator calls; give --batch-files on the command line",
    "help": "not an option",
}
#: columns naming a model folder or a Hub id: joined to the CSV's folder only when that path exists
MODEL_COLUMNS = ("model", "s3fd", "enhance-model")
#: what the pipeline is loaded with: rows that differ here get their own pipeline (loaded once each)
LOAD_SETTINGS = ("model", "precision", "enhance", "enhance_model")
EXIT_ROW_FAILED = 1
#: cell values of on/off columns (no-align-roll)
YES, NO = ("yes", "true", "1", "on", "x"), ("no", "false", "0", "off")


def add_jobs_flags(parser):
    """The batch flags of `talkface generate`."""
    group = parser.add_argument_group("batch: many generations with the model loaded once")
    group.add_argument("--jobs", metavar="JOBS_CSV",
                       help="CSV with columns face,audio,out and optionally any flag above by its long name (fps, "
                       "pads, blend, precision, ...); exit code 1 when a row failed (see docs/generation.md)")
    group.add_argument("--results", metavar="PATH",
                       help="results CSV of --jobs (default: JOBS.results.csv beside the jobs file)")
    group.add_argument("--overwrite", action="store_true",
                       help="with --jobs: redo rows whose output exists (default: skip them)")
    group.add_argument("--num-processes", type=int, default=1, metavar="N",
                       help="with --jobs: split the rows between N processes on this machine (with --device cuda "
                       "each uses its own GPU); on several GPUs or machines use `accelerate launch -m talkface "
                       "generate --jobs ...` (default: %(default)s)")
    group.add_argument("--batch-files", default="auto", metavar="K",
                       help="with --jobs: K rows in flight at once in each process, their face crops sharing "
                       "generator calls (Wav2Lip, TalkLip, our generator; outputs as one at a time); auto: "
                       "4 on CUDA, 1 elsewhere (default: %(default)s)")


# ----------------------------------------------------------------------------------------------------------------
# the jobs file
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One row of the jobs file: its number, its cells by column name, and its paths resolved."""

    row: int
    cells: dict[str, str]
    folder: Path
    problem: str | None = None  # found while reading (e.g. too many fields): the row fails with it

    def written(self, column: str) -> str:
        return self.cells.get(column, "")

    def path(self, column: str) -> Path | None:
        value = self.cells.get(column, "")
        return _beside(self.folder, value) if value else None


@dataclass
class JobsFile:
    path: Path
    columns: list[str]
    jobs: list[Job] = field(default_factory=list)


def normalise_column(name: str) -> str:
    return name.strip().lower().lstrip("-").replace("_", "-")


def option_actions(parser) -> dict[str, argparse.Action]:
    """long option name without dashes -> its argparse action, for every flag of `parser`."""
    actions = {}
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        for option in action.option_strings:
            if option.startswith("--"):
                actions[option[2:]] = action
    return actions


def read_jobs(path, actions: dict[str, argparse.Action]) -> JobsFile:
    """Read and check a jobs file; raise `TalkFaceUserError` (exit 2) for a problem with the file as a whole."""
    path = Path(path)
    if not path.exists():
        raise TalkFaceUserError(f"jobs file {path} not found; pass a CSV with the columns face,audio,out")
    if path.is_dir():
        raise TalkFaceUserError(f"jobs file {path} is a folder; pass a CSV file with the columns face,audio,out")
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: spreadsheets often start the file with a BOM
        records = list(csv.reader(io.StringIO(text)))
    except UnicodeDecodeError:
        raise TalkFaceUserError(f"jobs file {path} is not UTF-8 text; save it as a UTF-8 CSV") from None
    except csv.Error as err:
        raise TalkFaceUserError(f"jobs file {path} is not a valid CSV ({err})") from None
    records = [record for record in records if any(cell.strip() for cell in record)]
    if not records:
        raise TalkFaceUserError(f"jobs file {path} is empty; its first line must name the columns, e.g. "
                                "face,audio,out")
    columns = [normalise_column(name) for name in records[0]]
    for index, column in enumerate(columns):
        if not column:
            raise TalkFaceUserError(f"jobs file {path}: column {index + 1} of the header has no name")
        if column in columns[:index]:
            raise TalkFaceUserError(f"jobs file {path}: column {column!r} appears twice")
        if column in NOT_PER_ROW:
            raise TalkFaceUserError(f"jobs file {path}: column {records[0][index].strip()!r} cannot change from "
                                    f"row to row ({NOT_PER_ROW[column]})")
        if column not in JOB_COLUMNS and column not in actions:
            per_row = [name for name in actions if name not in NOT_PER_ROW and name not in JOB_COLUMNS]
            raise TalkFaceUserError(f"jobs file {path}: unknown column {records[0][index].strip()!r}; the columns "
                                    f"are face, audio, out and the generate options {', '.join(per_row)}")
    missing = [name for name in JOB_COLUMNS if name not in columns]
    if missing:
        raise TalkFaceUserError(f"jobs file {path} has no {', '.join(missing)} column; its first line must name "
                                "the columns, e.g. face,audio,out")
    if len(records) == 1:
        raise TalkFaceUserError(f"jobs file {path} has a header but no rows; add one line per generation")
    jobs = JobsFile(path, columns)
    for number, record in enumerate(records[1:], start=1):
        cells = {column: value.strip() for column, value in zip(columns, record)}
        problem = None
        if len(record) > len(columns) and any(value.strip() for value in record[len(columns):]):
            problem = (f"row {number} has {len(record)} fields but the header names {len(columns)} columns; "
                       "quote cells that contain commas")
        jobs.jobs.append(Job(number, cells, path.parent, problem))
    _check_outputs(jobs)
    return jobs


def _beside(folder: Path, value: str) -> Path:
    """A path from the jobs file: relative ones are relative to the jobs file's folder."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def _same_place(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _check_outputs(jobs: JobsFile):
    """Two rows writing one file would overwrite each other (at the same time, with several processes)."""
    seen = {}
    for job in jobs.jobs:
        out = job.path("out")
        if out is None:
            continue
        place = _same_place(out)
        if place == _same_place(jobs.path):
            raise TalkFaceUserError(f"jobs file {jobs.path}: row {job.row} writes its out over the jobs file itself")
        if place in seen:
            raise TalkFaceUserError(f"jobs file {jobs.path}: rows {seen[place]} and {job.row} both write "
                                    f"{job.written('out')}; give every row its own out")
        seen[place] = job.row


def default_results_path(jobs_path) -> Path:
    jobs_path = Path(jobs_path)
    return jobs_path.with_name(f"{jobs_path.stem}.results.csv")


def check_results_path(results: Path, jobs: JobsFile) -> Path:
    """The results CSV may be written at `results` without touching an input or a row's output (exit 2 before any
    work if not)."""
    from ..utils.io import check_output

    check_output(results, inputs=results_inputs(jobs), flag="--results", example="results.csv")
    place = _same_place(results)
    for job in jobs.jobs:
        out = job.path("out")
        if out is not None and _same_place(out) == place:
            raise TalkFaceUserError(f"--results {results} is the out of row {job.row}; choose another --results")
    return results


def results_inputs(jobs: JobsFile) -> dict[str, list[Path]]:
    """What the batch reads, by label, for the safe-output checks of the results CSV."""
    return {"--jobs": [jobs.path],
            "a face in the jobs file": [p for p in (job.path("face") for job in jobs.jobs) if p is not None],
            "an audio in the jobs file": [p for p in (job.path("audio") for job in jobs.jobs) if p is not None]}


def write_results(path: Path, results: list[dict], jobs: JobsFile):
    """The results CSV, written whole through a temporary file (never half-written; talkface.utils.io)."""
    from ..utils.io import write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(results)
    write_text(path, buffer.getvalue(), inputs=results_inputs(jobs), flag="--results")


# ----------------------------------------------------------------------------------------------------------------
# one row
# ----------------------------------------------------------------------------------------------------------------


class RowError(TalkFaceUserError):
    """A row's option value the generate parser refuses."""


class _RaisingParser(argparse.ArgumentParser):
    """An argument parser whose errors are exceptions (with argparse's own message) instead of exit(2)."""

    def error(self, message):
        raise RowError(message)


def row_parser():
    """The generate command's parser, raising instead of exiting: every row is read by the same flags."""
    from . import generate

    root = _RaisingParser(prog="talkface")
    return generate.register(root.add_subparsers())  # sub-parsers are made of the root's class


def row_arguments(job: Job, args, parser, actions: dict[str, argparse.Action]) -> argparse.Namespace:
    """The command line's arguments with the row's cells on top, parsed and checked as `talkface generate` does
    (raises `TalkFaceUserError` with the message the single command prints)."""
    if job.problem:
        raise RowError(job.problem)
    for column in JOB_COLUMNS:
        if not job.cells.get(column):
            raise RowError(f"row {job.row} has no {column}; fill in its {column} cell")
    tokens, off = [], {}
    for column, value in job.cells.items():
        if column in JOB_COLUMNS or not value:
            continue
        flag = f"--{column}"
        if column in MODEL_COLUMNS and (job.folder / value).exists() and not Path(value).is_absolute():
            value = str(job.folder / value)
        nargs = actions[column].nargs
        if nargs == 0:  # an on/off flag such as no-align-roll: yes turns it on, no leaves it off for this row
            answer = value.lower()
            if answer in YES:
                tokens.append(flag)
            elif answer in NO:
                off[actions[column].dest] = actions[column].default
            else:
                raise RowError(f"row {job.row}: column {column} takes yes or no, got {value!r}")
        elif isinstance(nargs, int) and nargs > 1:
            tokens += [flag, *value.replace(",", " ").split()]
        else:
            tokens.append(f"{flag}={value}")
    if "model" not in job.cells or not job.cells["model"]:
        tokens.append(f"--model={args.model}")
    row_args = parser.parse_args(tokens, namespace=copy.copy(args))
    for dest, default in off.items():
        setattr(row_args, dest, default)
    row_args.face, row_args.audio, row_args.out = (str(job.path(column)) for column in JOB_COLUMNS)
    return row_args


def load_key(row_args) -> tuple:
    return tuple(getattr(row_args, name) for name in LOAD_SETTINGS)


def result_row(job: Job, status: str, frames=None, seconds=None, error: str = "") -> dict:
    return {"row": job.row, **{column: job.written(column) for column in JOB_COLUMNS}, "status": status,
            "frames": "" if frames is None else frames, "seconds": "" if seconds is None else f"{seconds:.3f}",
            "error": error}


class JobRunner:
    """Runs rows in this process: the pipelines (one per distinct model/precision/enhancer) and S3FD backends are
    loaded on first use and kept; a load that failed fails every row that needs it, without loading again."""

    def __init__(self, args, device: str, progress: bool):
        self.args = args
        self.device = device
        self.progress = progress
        self._pipelines: dict[tuple, object] = {}
        self._backends: dict[str, object] = {}

    def pipeline(self, row_args):
        key = load_key(row_args)
        if key not in self._pipelines:
            try:
                self._pipelines[key] = self._load(row_args)
            except TalkFaceUserError as err:
                self._pipelines[key] = err
        loaded = self._pipelines[key]
        if isinstance(loaded, Exception):
            raise loaded
        return loaded

    def _load(self, row_args):
        from ..pipelines.lipsync.pipeline import LipSyncPipeline
        from .generate import _check_model_location

        _check_model_location(row_args.model)
        pipeline = LipSyncPipeline.from_pretrained(row_args.model, device=self.device, precision=row_args.precision,
                                                   enhance=row_args.enhance, enhance_model=row_args.enhance_model)
        logger.info("loaded %s on %s", row_args.model, pipeline.device)
        return pipeline

    def face_backend(self, options, row_args):
        if options.face_backend != "s3fd" or options.box is not None:
            return options
        from .generate import load_s3fd_backend

        key = str(row_args.s3fd)
        if key not in self._backends:
            self._backends[key] = load_s3fd_backend(row_args.s3fd, self.device)
        return options.replace(face_backend=self._backends[key])

    def run(self, job: Job, parser, actions) -> dict:
        start = time.perf_counter()
        try:
            row_args, options, pipeline = self._prepare(job, parser, actions)
            result = pipeline(face=row_args.face, audio=row_args.audio, out=row_args.out, options=options,
                              progress=self.progress)
        except Exception as err:
            return self._outcome(job, start, error=err)
        return self._outcome(job, start, result=result)

    def run_share(self, jobs: JobsFile, share: list[int], parser, actions) -> list[tuple[int, dict]]:
        """(index, result row) of every row of `share`. Rows run one after the other, or, where --batch-files
        comes to K > 1 on this device, K at a time through `LipSyncPipeline.generate_many` (rows with the same
        pipeline and --overlap together; each row's options, checks and result as when it runs alone)."""
        from ..pipelines.lipsync.execution import resolve_batch_files
        from ..utils.devices import resolve_device

        if resolve_batch_files(self.args.batch_files, resolve_device(self.device).type) == 1:
            return [(index, self.run(jobs.jobs[index], parser, actions)) for index in share]
        outcomes, groups = {}, {}
        for index in share:
            job, start = jobs.jobs[index], time.perf_counter()
            try:
                row_args, options, pipeline = self._prepare(job, parser, actions)
            except Exception as err:
                outcomes[index] = self._outcome(job, start, error=err)
                continue
            group = groups.setdefault((load_key(row_args), options.overlap), (pipeline, options.overlap, []))
            group[2].append((index, row_args, options, time.perf_counter() - start))
        for pipeline, overlap, rows in groups.values():
            count = resolve_batch_files(self.args.batch_files, pipeline.device.type)
            requests = [dict(face=row_args.face, audio=row_args.audio, out=row_args.out, options=options)
                        for _, row_args, options, _ in rows]
            results = pipeline.generate_many(requests, batch_files=count, overlap=overlap,
                                             progress=self.progress and count == 1)
            for (index, _, _, checked), result in zip(rows, results):
                outcomes[index] = self._outcome(jobs.jobs[index], None, result=result.result, error=result.error,
                                                seconds=checked + result.seconds)
        return [(index, outcomes[index]) for index in share]

    def _prepare(self, job: Job, parser, actions):
        """A row's arguments and options, checked as the single command checks them, and its pipeline."""
        from ..pipelines.lipsync.pipeline import check_lipsync_inputs
        from .generate import options_from_args

        row_args = row_arguments(job, self.args, parser, actions)
        options = options_from_args(row_args)
        check_lipsync_inputs(row_args.face, row_args.audio, row_args.out, options)  # before loading anything
        pipeline = self.pipeline(row_args)
        return row_args, self.face_backend(options, row_args), pipeline

    @staticmethod
    def _outcome(job: Job, start, result=None, error=None, seconds=None) -> dict:
        seconds = time.perf_counter() - start if seconds is None else seconds
        if error is None:
            outcome = result_row(job, "done", frames=result.num_frames, seconds=seconds)
            logger.info("row %d: done: %s (%s frames, %s s)", job.row, job.written("out"), outcome["frames"],
                        outcome["seconds"])
            return outcome
        if isinstance(error, TalkFaceUserError):
            message = str(error)
        else:  # a bug shows in this row's error (and with -v its traceback); the batch goes on
            logger.debug("row %d failed", job.row, exc_info=error)
            message = f"{type(error).__name__}: {error}"
        logger.info("row %d: failed: %s", job.row, message)
        return result_row(job, "failed", seconds=seconds, error=message)

    def close(self):
        for pipeline in self._pipelines.values():
            if not isinstance(pipeline, Exception):
                pipeline.close()


# ----------------------------------------------------------------------------------------------------------------
# the batch
# ----------------------------------------------------------------------------------------------------------------


def plan(jobs: JobsFile, args, parser, actions) -> tuple[dict[int, dict], list[int]]:
    """(results of the rows settled without generating: bad options or output already there, the indices of the
    rows to run). Decided once, by the main process, before anything is written."""
    from .. import media

    settled, todo = {}, []
    for index, job in enumerate(jobs.jobs):
        out = job.path("out")
        try:
            row_args = row_arguments(job, args, parser, actions)
            if out.is_file() and any(Path(p).is_file() and os.path.samefile(out, p)
                                     for p in (row_args.face, row_args.audio)):
                # an out that is the row's own input exists, but is not a finished row: the single command's line
                media.check_writable(out, inputs={"--face": row_args.face, "--audio": row_args.audio})
        except TalkFaceUserError as err:
            settled[index] = result_row(job, "failed", error=str(err))
            logger.info("row %d: failed: %s", job.row, err)
            continue
        if out.is_file() and not args.overwrite:
            settled[index] = result_row(job, "skipped")
            logger.info("row %d: skipped: %s exists (--overwrite redoes it)", job.row, job.written("out"))
        else:
            todo.append(index)
    return settled, todo


def run_jobs(args) -> int:
    """`talkface generate --jobs`: checks, then this process's share of the rows (see the module docstring)."""
    from ..pipelines.lipsync.execution import resolve_batch_files
    from ..utils.distributed import launch_local, launched_processes, without_option
    from ..utils.devices import resolve_device
    from .generate import _check_model_location

    given = [flag for flag, value in (("--face", args.face), ("--audio", args.audio), ("--out", args.out)) if value]
    if given:
        raise TalkFaceUserError(f"--jobs takes face, audio and out from the jobs file; leave out {', '.join(given)}")
    if args.num_processes < 1:
        raise TalkFaceUserError(f"--num-processes must be at least 1, got {args.num_processes}")
    resolve_batch_files(args.batch_files, "cpu")  # a bad --batch-files is one line before anything runs
    if args.num_processes > 1 and launched_processes() > 1:
        raise TalkFaceUserError("--num-processes starts processes itself; under accelerate launch or torchrun leave "
                                "it out (the launcher's --num_processes decides)")
    parser = row_parser()
    actions = option_actions(parser)
    jobs = read_jobs(args.jobs, actions)
    results_path = check_results_path(Path(args.results) if args.results else default_results_path(args.jobs), jobs)
    _check_model_location(args.model)
    resolve_device(args.device)  # one line for a device this machine lacks, before any process starts
    if args.num_processes > 1:
        argv = getattr(args, "argv", None)
        if not argv:
            raise TalkFaceUserError("--num-processes needs the command line; run it as `talkface generate ...`")
        return launch_local(without_option(argv, "--num-processes"), args.num_processes)
    return _run_share(jobs, args, parser, actions, results_path)


def _process_device(device: str, world_size: int, local_rank: int) -> str:
    import torch

    from ..utils.distributed import process_device

    if world_size > 1 and device == "auto" and torch.cuda.is_available():
        device = "cuda"  # several processes on a GPU machine: one GPU each, not all on cuda:0
    return process_device(device, local_rank) if world_size > 1 else device


def _run_share(jobs: JobsFile, args, parser, actions, results_path: Path) -> int:
    from ..utils.distributed import ProcessGroup, shard_bounds

    with ProcessGroup() as group:
        if group.is_main:
            settled, todo = plan(jobs, args, parser, actions)
        else:
            settled, todo = {}, None
        todo = group.broadcast(todo)
        start, stop = shard_bounds(len(todo), group.world_size, group.rank)
        share = todo[start:stop]
        runner = JobRunner(args, _process_device(args.device, group.world_size, group.local_rank),
                           progress=not args.no_progress and group.is_main)
        try:
            # the command line's model once per process, before any row: a bad --model stops every process (exit 2)
            problem = None
            if any(load_key(row_arguments(jobs.jobs[i], args, parser, actions)) == load_key(args) for i in share):
                try:
                    runner.pipeline(args)
                except TalkFaceUserError as err:
                    problem = str(err)
            problems = group.gather(problem)
            problem = group.broadcast(next((p for p in problems if p), None) if group.is_main else None)
            if problem:
                if group.is_main:
                    raise TalkFaceUserError(problem)
                return 2  # the main process says why
            logger.info("process %d of %d: %d of %d rows to run", group.rank, group.world_size, len(share),
                        len(jobs.jobs))
            outcomes = runner.run_share(jobs, share, parser, actions)
        finally:
            runner.close()
        gathered = group.gather(outcomes)
        code = None
        if group.is_main:
            merged = dict(settled)
            for shard in gathered:
                merged.update(shard)
            results = [merged[index] for index in range(len(jobs.jobs))]
            write_results(results_path, results, jobs)
            code = _summary(results, results_path)
        return group.broadcast(code)


def _summary(results: list[dict], results_path: Path) -> int:
    counts = {status: sum(r["status"] == status for r in results) for status in ("done", "skipped", "failed")}
    for result in results:
        if result["status"] == "failed":
            print(f"row {result['row']} failed: {result['error']}")
    print(f"{len(results)} rows: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed; "
          f"wrote {results_path}")
    return EXIT_ROW_FAILED if counts["failed"] else 0
