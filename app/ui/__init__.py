"""The Streamlit knowledge-search app (`kb ui`, `kb demo`): search, raw data, rerank playground, library, tuning,
status. `APP_FILE` is the entry file that `streamlit run` is given."""

from pathlib import Path

APP_FILE = Path(__file__).parent / "main.py"
