"""`python -m talkface`: the talkface command (also the module `accelerate launch -m talkface` runs)."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a process-spawning library re-imports the main module
    code = main()
    from .utils.distributed import exit_launched_copy, launched_processes

    if launched_processes() > 1:  # a copy under accelerate launch / torchrun / --num-processes
        exit_launched_copy(code)
    sys.exit(code)
