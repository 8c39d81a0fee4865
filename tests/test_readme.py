"""The README's gate example is what the command really prints."""

import re
import subprocess
import sys
import tomllib
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


# --- the docs points of issue 14 section 4, held to the code -----------------------------------------------------


def _running_it_for_real() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Running it for real", 1)[1].split("\n## ", 1)[0]


def test_every_command_of_running_it_for_real_parses():
    """Each `dialer ...` line of the README's walk-through (create, start and watch a campaign included) is a
    command line the CLI accepts."""
    import shlex

    from dialer.cli import build_parser

    section = _running_it_for_real()
    block = re.search(r"```sh\n(.+?)\n```", section, re.S).group(1)
    commands = [shlex.split(line.split("#", 1)[0])[1:] for line in block.splitlines() if line.startswith("dialer ")]
    assert any(c[:2] == ["campaigns", "create"] and "--start" in c for c in commands)  # a campaign is created
    assert any(c[:2] == ["campaigns", "wait"] for c in commands)  # and watched to its end
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)  # argparse exits (SystemExit) on a line it would refuse
        assert callable(getattr(args, "func", None)), argv


def test_the_readme_campaign_file_is_one_the_api_accepts():
    from dialer.campaigns import CONFIG_SCHEMA
    from gateway.validation import validate

    section = _running_it_for_real()
    spec = tomllib.loads(re.search(r"```toml\n(.+?)\n```", section, re.S).group(1))
    assert spec["pacing_mode"] == "progressive" and spec["lists"]
    validate(spec, CONFIG_SCHEMA)  # raises ApiError naming the field otherwise


def test_the_gateway_docs_give_the_pacing_modes_and_ratio_the_api_accepts():
    from dialer.campaigns import CONFIG_SCHEMA

    text = " ".join((ROOT / "docs" / "gateway.md").read_text(encoding="utf-8").split())
    modes = re.search(r"`pacing_mode` \(([a-z/]+);", text).group(1).split("/")
    assert modes == CONFIG_SCHEMA["properties"]["pacing_mode"]["enum"]  # no `preview`: the API rejects it
    low, high = map(int, re.search(r"`pacing_ratio` \((\d+)-(\d+),", text).groups())
    ratio = CONFIG_SCHEMA["properties"]["pacing_ratio"]
    assert (low, high) == (ratio["minimum"], ratio["maximum"])


def test_the_asterisk_readme_names_the_dial_template_setting_and_amd_conf():
    from dialer.config import SETTINGS

    text = " ".join((ROOT / "asterisk" / "README.md").read_text(encoding="utf-8").split())
    assert "`runtime.dial_template`" in text and "runtime.dial_template" in {s.name for s in SETTINGS}
    assert "does not exist" not in text.split("`runtime.dial_template`", 1)[0][-200:]
    assert "`amd.conf`" in text  # app_amd on Asterisk 22 does not load without it
