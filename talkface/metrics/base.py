"""The Metric protocol: everything `evaluate()`, the `talkface` commands and the demo know about a metric.

A metric is one class. It says what it reports (`fields`), what it needs per file (`needs`: a reference video,
the audio, a transcript), which model it loads and how (`model_option`, `model_env`, `model_hint`,
`load_model`), whether it needs a face backend, which settings change its result (`settings`, part of the cache
key), how it scores one file pair (`compute`) and how per-file results become the data-set value (`summarise`).
Registering it (`@register_metric`) is all it takes to run it through `talkface evaluate --metrics NAME`,
`talkface.evaluation.evaluate.evaluate` and the demo's scorer:

    from talkface.metrics import Metric, register_metric

    @register_metric
    class MeanBrightness(Metric):
        name = "brightness"
        fields = ("brightness",)
        higher_is_better = {"brightness": None}
        description = "mean grey level of the generated frames"

        def compute(self, media, context):
            frames = media.generated_frames
            return {"values": {"brightness": float(frames.mean())}, "num_frames": len(frames)}

What `compute(media, context)` is given (duck-typed; `talkface.evaluation` provides both):
    media: `.pair` (`.stem`, `.generated`, `.reference`, `.audio`, `.text` paths or None), `.generated_frames` /
        `.reference_frames` (RGB uint8 (frames, H, W, 3) at 25 fps), `.audio` (float32 mono at 16 kHz: `--audio`,
        else the generated video's own sound), `.transcript`, and `.value(key, compute)` to share something derived
        from the media between metrics (decoded once per pair).
    context: `.options` (the run's `EvaluationOptions`), `.model(metric)` (this metric's model, loaded once per
        run), `.face_backend()` (one per run), `.save_arrays(stem, metric, **arrays)` / `.load_arrays(stem, metric,
        artifact)` (arrays kept beside the cache for `summarise`).
What it returns (JSON-serialisable; cached as it is):
    {"values": {field: float}, "num_frames": int (optional), "counts": {...} (optional, e.g. word errors),
     "details": {...} (optional; "skipped": {field: reason} names fields it could not compute),
     "curves": {name: per-frame list} (optional; plotted)}
A `TalkFaceUserError` raised by `compute` (unreadable file, no face, clip too short) skips that file for this
metric with the error as the reason; the other metrics and files still run.

Before a run, `missing_requirements(metrics, options, inputs)` says what keeps each metric from running at all
(a needed input the run has no files for, no model named), from `needs`, `field_needs`, `model_option` and
`model_required`; the commands turn that into "lse needs --syncnet MODEL" and the demo into its own words.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import ModelLoadError, TalkFaceUserError

#: inputs a metric may need for one file
GENERATED, REFERENCE, AUDIO, TEXT = "generated", "reference", "audio", "text"
#: how a metric's per-file values become the data-set value (`Metric.aggregate`, documentation for the report)
AGGREGATIONS = ("mean", "frame_mean", "corpus", "dataset")

#: inputs every run has: the generated videos, and their own sound tracks standing in for separate audio
ALWAYS_AVAILABLE = frozenset({GENERATED, AUDIO})

#: every registered metric, by name, in registration order (the order of report columns)
METRICS: dict[str, Metric] = {}


def is_number(value) -> bool:
    """A per-file value that counts in a summary: a number that is not NaN (+-inf counts)."""
    return isinstance(value, (int, float)) and not math.isnan(value)


class Metric:
    """One evaluation metric. Subclass it, set the class attributes, implement `compute`, register it.

    Class attributes:
        name: the name of `--metrics` (lower case).
        fields: the values it reports per file and in the summary (report columns), e.g. ("lse_d", "lse_c").
        needs: inputs each file must have, from GENERATED, REFERENCE, AUDIO, TEXT (a file without a needed
            reference is skipped for this metric; a run without any reference reports the metric unavailable).
        uses: inputs used when present but not required (e.g. AVS_m / AVS_v use the reference); with `needs`,
            they are the files whose size and time stamp key the cache.
        field_needs: field -> inputs that field needs on top of `needs` (AVS_m and AVS_v need the reference that
            AVS as a whole only uses); asking for such a field without them cannot be answered.
        aggregate: "mean" (over files), "frame_mean" (over all frames: files weighted by `num_frames`), "corpus"
            (summed counts, e.g. WER) or "dataset" (from all files at once, e.g. FID). `summarise` implements it.
        higher_is_better: field -> True / False / None (no direction, e.g. the AV offset).
        description: one line for the report and `--help`.
        field_help: field -> one line saying what it means (result tables).
        integer_fields: fields that hold whole numbers (shown without decimals).
        curve_labels: per-frame curve name -> axis label (plots).
        model_option: the `EvaluationOptions` field / CLI flag naming the model folder (None: no model).
        model_env: environment variable read when the option is not given.
        model_hint: how to get the model, shown when it is missing.
        default_model: the registry name (`talkface download --list`) used when neither the option nor the
            environment variable names a model (None: no default).
        model_required: whether a run must name the model (option or environment variable); False when
            `load_model` has a default of its own (FID's default folder).
    """

    name: str = ""
    fields: tuple[str, ...] = ()
    needs: frozenset = frozenset({GENERATED})
    uses: frozenset = frozenset()
    field_needs: dict = {}
    aggregate: str = "mean"
    higher_is_better: dict = {}
    description: str = ""
    field_help: dict = {}
    integer_fields: frozenset = frozenset()
    curve_labels: dict = {}
    model_option: str | None = None
    model_env: str | None = None
    model_hint: str = ""
    default_model: str | None = None
    model_required: bool = True

    # -- inputs, model, settings ----------------------------------------------------------------------------------
    @property
    def inputs(self) -> frozenset:
        """Every input whose file keys the cache: the generated video, `needs` and `uses`."""
        return frozenset({GENERATED}) | self.needs | self.uses

    def model_source(self, options) -> str | None:
        """The model folder / Hub id / registry name: the option, else the environment variable, else the
        metric's `default_model` name, else None."""
        return self.given_model_source(options) or self.default_model

    def given_model_source(self, options) -> str | None:
        """The model the user named: the option, else the environment variable (no default), else None."""
        if self.model_option is None:
            return None
        return getattr(options, self.model_option, None) or (os.environ.get(self.model_env) if self.model_env
                                                              else None) or None

    def missing(self, options, inputs, fields=None) -> list[str]:
        """What keeps this metric (or these of its `fields`) from being computed in a run whose files have
        `inputs` (a set of GENERATED, REFERENCE, AUDIO, TEXT): the needed inputs it lacks, in the order
        REFERENCE, AUDIO, TEXT, then `model_option` when no model is named and there is no default. Empty: it
        can run (a file may still be skipped, e.g. one without a reference of its name)."""
        needed = set(self.needs)
        for name in fields or ():
            needed |= set(self.field_needs.get(name, ()))
        missing = [need for need in (REFERENCE, AUDIO, TEXT) if need in needed and need not in inputs]
        if self.model_option and self.model_required and not self.model_source(options):
            missing.append(self.model_option)
        return missing

    def load_model(self, source, options):
        """Load the model (weights, once per run or, in the demo, once per process): override when
        `model_option` is set. `source` is `model_source(options)`; None when nothing names a model (raise
        `ModelLoadError` with `model_hint`, as the default does, unless the metric has a default folder)."""
        raise ModelLoadError(f"no model given for {self.name}; {self.model_hint}")

    def bind_model(self, model, context):
        """The object `context.model(self)` returns for this run, made from the loaded model (default: the model
        itself; e.g. a scorer with this run's settings and face backend around cached weights)."""
        return model

    def needs_face_backend(self, options) -> bool:
        """Whether `compute` uses `context.face_backend()` under these options (checked before the run)."""
        return False

    def settings(self, options) -> dict:
        """The options that change this metric's per-file result (part of its cache key)."""
        return {}

    def artifacts(self, result: dict) -> list[str]:
        """Files beside the cache that a cached `result` relies on (a cached result whose file is gone is
        recomputed)."""
        return []

    # -- scoring --------------------------------------------------------------------------------------------------
    def compute(self, media, context) -> dict:
        """Score one file pair (see the module docstring for `media`, `context` and the result)."""
        raise NotImplementedError(f"{type(self).__name__}.compute")

    def summarise(self, results: list[dict], context) -> dict:
        """Data-set values from the per-file results of `compute` (each with its file's "stem"), as
        {field: {"value", "files", "metric", "higher_is_better"}}; fields without a value are left out.
        The default is the mean over files."""
        return self.mean_over_files(results)

    # -- helpers for summarise ------------------------------------------------------------------------------------
    def entry(self, field: str, value: float, files: int) -> dict:
        """One summary entry."""
        return {"value": value, "files": files, "metric": self.name,
                "higher_is_better": self.higher_is_better.get(field)}

    def _with_value(self, results, field) -> list[dict]:
        return [r for r in results if field in r.get("values", {}) and is_number(r["values"][field])]

    def mean_over_files(self, results) -> dict:
        summary = {}
        for field in self.fields:
            rows = self._with_value(results, field)
            if rows:
                value = float(np.mean(np.array([r["values"][field] for r in rows], dtype=float)))
                summary[field] = self.entry(field, value, len(rows))
        return summary

    def mean_over_frames(self, results) -> dict:
        """Mean over all frames of all files: per-file means weighted by their `num_frames`."""
        summary = {}
        for field in self.fields:
            rows = self._with_value(results, field)
            if rows:
                values = np.array([r["values"][field] for r in rows], dtype=float)
                weights = np.array([r.get("num_frames", 1) for r in rows], dtype=float)
                summary[field] = self.entry(field, float(np.sum(values * weights) / np.sum(weights)), len(rows))
        return summary

    def __repr__(self) -> str:
        return f"<metric {self.name}: {', '.join(self.fields)}>"


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: check the metric's declaration and add an instance to `METRICS` under its name."""
    metric = cls()
    if not metric.name or metric.name != metric.name.lower() or "," in metric.name:
        raise ValueError(f"{cls.__name__}.name must be a lower-case name without commas, got {metric.name!r}")
    if not metric.fields:
        raise ValueError(f"{cls.__name__}.fields is empty; name the values it reports")
    if set(metric.higher_is_better) - set(metric.fields):
        raise ValueError(f"{cls.__name__}.higher_is_better names fields it does not report: "
                         f"{sorted(set(metric.higher_is_better) - set(metric.fields))}")
    if metric.aggregate not in AGGREGATIONS:
        raise ValueError(f"{cls.__name__}.aggregate must be one of {AGGREGATIONS}, got {metric.aggregate!r}")
    if set(metric.field_needs) - set(metric.fields):
        raise ValueError(f"{cls.__name__}.field_needs names fields it does not report: "
                         f"{sorted(set(metric.field_needs) - set(metric.fields))}")
    unknown = (metric.needs | metric.uses | {i for n in metric.field_needs.values() for i in n}) - {
        GENERATED, REFERENCE, AUDIO, TEXT}
    if unknown:
        raise ValueError(f"{cls.__name__} needs unknown inputs {sorted(unknown)}")
    taken = {f: m.name for m in METRICS.values() if m.name != metric.name for f in m.fields}
    clashes = sorted(f for f in metric.fields if f in taken)
    if clashes:
        raise ValueError(f"{cls.__name__} reports {clashes}, already reported by {taken[clashes[0]]}")
    METRICS[metric.name] = metric
    return cls


def missing_requirements(metrics, options, inputs, fields=None) -> dict[str, list[str]]:
    """metric name -> what keeps it from running (`Metric.missing`), for the metrics that lack something.

    inputs: what the run's files include (`ALWAYS_AVAILABLE` plus REFERENCE / TEXT when given). fields: the fields
    asked for by name (checked against `field_needs`), None for whole metrics."""
    result = {}
    for name in metrics:
        metric = get_metric(name)
        asked = [f for f in fields if f in metric.fields] if fields else None
        missing = metric.missing(options, frozenset(inputs), asked)
        if missing:
            result[metric.name] = missing
    return result


def unregister_metric(name: str) -> None:
    """Remove a registered metric (for tests that register toy metrics)."""
    METRICS.pop(name, None)


def get_metric(name) -> Metric:
    """The registered metric of that name (a `Metric` is returned as it is)."""
    if isinstance(name, Metric):
        return name
    try:
        return METRICS[name]
    except KeyError:
        raise TalkFaceUserError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}") from None


def parse_metric_names(names) -> list[str]:
    """'lse,ssim' or a list -> validated names, in the order given, without repeats."""
    if isinstance(names, str):
        names = names.split(",")
    result = []
    for name in (n.strip().lower() for n in names):
        if name and name not in result:
            get_metric(name)
            result.append(name)
    if not result:
        raise TalkFaceUserError(f"no metric given; pass --metrics with some of: {', '.join(METRICS)}")
    return result
