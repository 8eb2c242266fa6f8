"""`python -m bytewax_nb.cli`: the `bytewax-nb` command."""

from .main import main

raise SystemExit(main())
