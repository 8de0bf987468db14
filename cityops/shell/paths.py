"""Where the shell finds the checkout's data (districts, scenarios) and keeps its runs."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"
