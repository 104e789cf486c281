"""Training of the generators: `data/` (preprocessed layout, datasets, batches), `losses/`, `recipes/` (one class
per generator family, driven by train/train.py), and the loop's helpers: `config`, `checkpointing`, `validation`."""
