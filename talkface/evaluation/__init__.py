"""Evaluation of generated videos: the loop the CLI and the demo drive.

- `evaluate.py`: `evaluate()` (folders in, report out), `evaluate_pairs()` (the loop), `EvaluationOptions`,
  `EvaluationContext` (models, face backend and cache shared by the metrics of a run).
- `pairing.py`: generated / reference / audio / transcript files paired by name; `PairMedia` decodes a pair once.
- `cache.py`: per-file results cached in REPORT_DIR/cache, so a rerun resumes.
- `report.py`: `EvaluationReport` and results.json / results.csv / report.md; `plots.py`: PNG plots.

The metrics themselves are `talkface.metrics.Metric` classes.
"""
