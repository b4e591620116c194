"""The imaging module imports no Django, so its tests must run without Django settings."""

import pytest


@pytest.fixture(autouse=True)
def data_dir(tmp_path):
    """Shadow the project-wide fixture (tests/conftest.py), which needs pytest-django's
    `settings`; imaging code never reads DATA_DIR."""
    return tmp_path
