"""Sub-commands of the `talkface` command line (see talkface/cli.py)."""
