"""Entry point of a bee replica: `python -m bytewax_nb.replica` (boot line on stdin)."""

from .start import main

main()
