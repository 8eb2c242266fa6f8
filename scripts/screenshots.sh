#!/usr/bin/env bash
# The docs' pictures of the Swarm widget, taken from the real front-ends by the browser
# tests (JupyterLab, Notebook 7, marimo; headless Chromium): docs/img/widget-*.png, and
# of JupyterLab's side panel (its test deploys a stack): docs/img/lab-panel.png.
set -euo pipefail
cd "$(dirname "$0")/.."
BYTEWAX_NB_SCREENSHOTS="$PWD/docs/img" python -m pytest tests/test_widget_browser.py tests/test_lab_panel.py -q -p no:cacheprovider
ls -l docs/img/widget-*.png docs/img/lab-panel.png
