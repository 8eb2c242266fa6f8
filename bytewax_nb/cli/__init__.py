"""The `bytewax-nb` command: run a notebook headless, watch, change or stop swarms of this
machine, deploy and attach to stacks, clean up.

Runs in a terminal's process. Imports the public API and everything below it.
"""

from .main import main

__all__ = ["main"]
