"""Client configuration: flag > EDGEBAC_* environment > config file > default, for every command;
bad files are one error line naming the file and the key."""

from __future__ import annotations

import json
import re

import click
import pytest

from edgebac.cli import cli
from edgebac.cli.config import default_map
from edgebac.errors import ConfigError
from tests.procs import nodes_fixture, run_edgebac
from tests.test_cli_errors import assert_one_line_error

nodes = nodes_fixture()
FLAG, ENV, FILE = "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"


def api_used(result) -> str:
    """The API a client command tried (nothing listens on these ports)."""
    line = assert_one_line_error(result, "cannot reach the node API at")
    match = re.search(r" at (http://[0-9.]+:[0-9]+)", line)
    assert match, line
    return match.group(1)


@pytest.mark.parametrize(
    ("flag", "env", "file", "expect"),
    [
        (FLAG, ENV, FILE, FLAG),
        (None, ENV, FILE, ENV),
        (None, None, FILE, FILE),
        (None, None, None, "http://127.0.0.1:7700"),
    ],
)
def test_precedence_flag_env_file_default(tmp_path, flag, env, file, expect):
    config = tmp_path / "config.yaml"
    config.write_text(f"api: {file}\n" if file else "{}\n")
    environ = {"EDGEBAC_CONFIG": str(config)}
    if env:
        environ["EDGEBAC_API"] = env
    args = ["job", "list", *(["--api", flag] if flag else [])]
    result = run_edgebac(*args, env=environ)
    assert api_used(result) == expect


def test_default_file_flat_keys_and_sections_against_a_real_node(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    home = tmp_path / "xdg"
    (home / "edgebac").mkdir(parents=True)
    (home / "edgebac" / "config.yaml").write_text(
        f"api: {node.url}\noutput: text\njob:\n  list:\n    output: json\n    limit: 5\n"
    )
    env = {"XDG_CONFIG_HOME": str(home)}
    listed = run_edgebac("job", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["jobs"] == []  # the section's output, the flat api
    text = run_edgebac("node", "list", env=env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("NODE")  # the flat output
    flagged = run_edgebac("job", "list", "--output", "text", env=env)
    assert flagged.stdout.startswith("JOB")
    enved = run_edgebac("job", "list", env={**env, "EDGEBAC_OUTPUT": "text"})
    assert enved.stdout.startswith("JOB")
    # --config before the command beats EDGEBAC_CONFIG and the default file
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"api": FILE}))
    chosen = run_edgebac("--config", other, "job", "list", env={**env, "EDGEBAC_CONFIG": "x"})
    assert api_used(chosen) == FILE


def test_data_dir_and_other_spellings(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"data-dir: {tmp_path / 'nowhere'}\n")
    result = run_edgebac("log", "show", env={"EDGEBAC_CONFIG": str(config)})
    assert_one_line_error(result, str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("apii: http://x\n", ["unknown key 'apii'"]),
        ("output: xml\n", ["key 'output'", "xml"]),
        ("job:\n  nope:\n    output: json\n", ["'nope'", "section 'job'", "not a command"]),
        ("job:\n  data-dir: /tmp\n", ["unknown key 'data-dir'", "section 'job'"]),
        ("job:\n  list:\n    limit: lots\n", ["key 'limit'", "section 'job list'"]),
        ("- api\n- output\n", ["must be a mapping"]),
        ("api: [unclosed\n", ["not valid YAML"]),
        ("api: [a, b]\n", ["key 'api'", "not a list"]),
        ("api:\n", ["key 'api'", "expected a value"]),
    ],
)
def test_bad_files_are_one_line_naming_file_and_key(tmp_path, text, names):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = run_edgebac("job", "list", env={"EDGEBAC_CONFIG": str(config)})
    assert result.returncode == 1
    assert_one_line_error(result, str(config), *names)


def test_a_config_file_that_is_not_there(tmp_path):
    missing = tmp_path / "missing.yaml"
    result = run_edgebac("--config", missing, "job", "list")
    assert_one_line_error(result, str(missing), "No such file")
    bad_json = tmp_path / "c.json"
    bad_json.write_text("{api: 1}")
    assert_one_line_error(run_edgebac("--config", bad_json, "job", "list"), "not valid JSON")


def test_the_default_map_reaches_every_command_that_takes_the_option(tmp_path):
    data = {"api": FILE, "output": "json", "input": "s3://b/k:/in", "docker": {"run": {"wait": 1}}}
    built = default_map(cli, data, tmp_path / "c.yaml")
    assert built["job"]["logs"] == {"api": FILE, "output": "json"}
    assert built["node"]["list"] == {"api": FILE, "output": "json"}
    assert built["docker"]["run"]["inputs"] == ["s3://b/k:/in"]  # a multiple option: a list
    assert built["docker"]["run"]["wait"] == "1"
    assert "wait" not in built["wasm"]["run"]
    assert built["log"]["show"] == {"output": "json"}
    with pytest.raises(ConfigError, match="key 'wait' in section 'docker run'"):
        default_map(cli, {"docker": {"run": {"wait": "maybe"}}}, tmp_path / "c.yaml")


SHOWS_DATA = [
    "node list",
    "job run",
    "job describe",
    "job list",
    "job cancel",
    "job logs",
    "docker run",
    "wasm run",
    "network admit",
    "network revoke",
    "log show",
    "log verify",
]


@pytest.mark.parametrize("path", SHOWS_DATA)
def test_commands_that_show_data_take_output_json(path):
    command: click.Command = cli
    for name in path.split():
        assert isinstance(command, click.Group)
        command = command.commands[name]
    (output,) = [p for p in command.params if p.name == "output"]
    assert isinstance(output.type, click.Choice)
    assert "json" in output.type.choices


def test_api_without_a_scheme_is_http(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    host_port = node.url.removeprefix("http://")
    listed = run_edgebac("job", "list", "--output", "json", "--api", host_port)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["jobs"] == []
    assert api_used(run_edgebac("job", "list", "--api", "127.0.0.1:1")) == "http://127.0.0.1:1"
    for bad in ("ftp://127.0.0.1:1", "http://", "127.0.0.1:port"):
        assert_one_line_error(run_edgebac("job", "list", "--api", bad), "--api", repr(bad))


def _commands(command: click.Command, path: str = "edgebac"):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_every_option_says_what_it_is_and_reads_a_clean_env_var():
    for path, command in _commands(cli):
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("help", "version"):
                continue
            assert param.help, f"{path} {param.opts[0]} has no help"
            if param.envvar:
                assert re.fullmatch(r"EDGEBAC_[A-Z_]+", str(param.envvar)), (path, param.envvar)
    shown = run_edgebac("docker", "run", "--help").stdout
    assert "__NO_WAIT" not in shown
    assert "EDGEBAC_WAIT]" in " ".join(shown.split())
    for flag, words in (
        ("--timeout", "Seconds an"),
        ("--network", "full:"),
        ("--retries", "retry"),
    ):
        line = " ".join(shown.split(flag, 1)[1].split())
        assert line.split(" --")[0].count(words) == 1, (flag, line[:120])


def test_timeout_keys_mean_one_thing_each(tmp_path):
    """`timeout` is the job's timeout (docker/wasm run); job get looks for holders for
    `find-timeout` seconds: one flat key cannot mean both."""
    built = default_map(cli, {"timeout": 5, "find-timeout": 7}, tmp_path / "c.yaml")
    assert built["docker"]["run"]["timeout"] == "5"
    assert built["wasm"]["run"]["timeout"] == "5"
    assert built["job"]["get"] == {"find_timeout": "7"}
    with pytest.raises(ConfigError, match="unknown key 'timeout' in section 'job get'"):
        default_map(cli, {"job": {"get": {"timeout": 5}}}, tmp_path / "c.yaml")


def test_wait_reads_edgebac_wait(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"engine": {"type": "noop"}}))
    ran = run_edgebac("job", "run", spec, "--api", node.url, env={"EDGEBAC_WAIT": "1"})
    assert ran.returncode == 0, ran.stderr
    assert "completed" in ran.stderr + ran.stdout  # it followed the job to its end
