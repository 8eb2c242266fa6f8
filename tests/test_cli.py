"""The `bytewax-nb` command as installed."""

from __future__ import annotations

import subprocess

import bytewax_nb


def test_version_is_printed_by_the_installed_command() -> None:
    out = subprocess.run(["bytewax-nb", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"bytewax-nb {bytewax_nb.__version__}"
