import subprocess
import sys

import pytest

from dialer.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "dialer.toml"
    path.write_text(text)
    return path


def test_defaults_without_file():
    config = load_config(env={})
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config["gateway.host"] == "127.0.0.1"


def test_file_then_environment_overrides(tmp_path):
    path = write(tmp_path, '[redis]\nurl = "redis://10.0.0.1:6380/2"\n[gateway]\nport = 9000\n')
    config = load_config(path, env={"DIALER_GATEWAY_PORT": "9100"})
    assert config.redis_url == "redis://10.0.0.1:6380/2"
    assert config["gateway.port"] == 9100


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("[gateway]\nport = 'x'\n", {}, "gateway.port"),
        ("[gateway]\nprot = 1\n", {}, "gateway.prot"),
        ("[redis]\nurl = 'http://x'\n", {}, "redis.url"),
        ("", {"DIALER_LOG_LEVEL": "loud"}, "log.level"),
        ("", {"DIALER_GATEWAY_PORT": "70000"}, "gateway.port"),
        ("[[asterisk]]\nhost = 'h'\nusername = 'u'\n", {}, "asterisk[0].secret"),
        ("[[asterisk]]\nhost = 'h'\nusername = 'u'\nsecret_env = 'NOPE'\n", {}, "NOPE"),
        ("[redis\n", {}, "invalid TOML"),
    ],
)
def test_wrong_settings_name_the_setting(tmp_path, text, env, named):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env)
    message = str(info.value)
    assert named in message
    assert "\n" not in message


def test_asterisk_servers_keep_secret_out_of_repr(tmp_path):
    path = write(tmp_path, "[[asterisk]]\nname='a'\nhost='h'\nusername='u'\nsecret='s3cr3t'\n")
    config = load_config(path, env={})
    assert config.asterisk[0].port == 5038
    assert "s3cr3t" not in repr(config.asterisk[0])


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    path = write(tmp_path, "[gateway]\nport = 'x'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "dialer", "--config", str(path), "config", "check"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "gateway.port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_dial_template_with_unknown_fields_is_refused(tmp_path):
    path = tmp_path / "dialer.toml"
    path.write_text('[runtime]\ndial_template = "PJSIP/{number}@{trunk}"\n')
    with pytest.raises(ConfigError, match=r"runtime\.dial_template: only \{number\} and \{digits\}"):
        load_config(path, env={})
    path.write_text('[runtime]\ndial_template = "PJSIP/{{x}}{number}@trunk"\n')  # literal braces are fine
    assert load_config(path, env={})["runtime.dial_template"] == "PJSIP/{{x}}{number}@trunk"
