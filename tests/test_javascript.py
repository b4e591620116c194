"""The frontend's pure JavaScript (VOI LUT, geometry, cache, stacks) under node's built-in
test runner: tests/js/*.test.mjs."""

import shutil
import subprocess

import pytest

from .conftest import REPO


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (apt: nodejs)")
def test_it_passes_the_javascript_unit_tests():
    files = sorted(str(p) for p in (REPO / "tests" / "js").glob("*.test.mjs"))
    result = subprocess.run(
        ["node", "--test", *files], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
