"""`python -m talkface`: the talkface command (also the module `accelerate launch -m talkface` runs)."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a process-spawning library re-imports the main module
    sys.exit(main())
