"""The README's "Testing your handlers" file runs as printed: extracted to
a fresh directory and run by pytest in its own process (its last test
boots the real server, or is skipped without a build)."""

import os
import re
import subprocess
import sys

from hornbeam_channels.testing import missing_build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_file(name):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"```python\n(# " + re.escape(name) + r"\b.*?)```", text, re.S)
    assert m, f"README.md has no python block starting with '# {name}'"
    return m.group(1)


def test_readme_test_file_passes_as_printed(tmp_path):
    (tmp_path / "test_room.py").write_text(readme_file("test_room.py"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "priv", "python")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_room.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    expected = "4 passed, 1 skipped" if missing_build() else "5 passed"
    assert expected in run.stdout, run.stdout
