"""The README's gate example is what the command really prints."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_gate_example_matches_the_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Asking the gate", 1)[1]
    scenario = re.search(r"echo '(.+?)' \| dialer gate check", section).group(1)
    expected = re.search(r"```json\n(.+?)\n```", section).group(1)
    out = subprocess.run([sys.executable, "-m", "dialer", "gate", "check"], input=scenario,
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    assert out == expected
