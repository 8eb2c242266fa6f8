"""The `bytewax-nb` command (the notebook issue fills in run, list, status, ...)."""

from __future__ import annotations

import argparse

from . import __version__

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bytewax-nb", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bytewax-nb {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
