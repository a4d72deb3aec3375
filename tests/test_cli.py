import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfsynth import cli

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_module_is_a_subcommand_and_listed_in_the_help(capsys):
    """A module added to tfsynth/commands/ without a table entry (or an entry naming another
    package) would be a command no user can reach."""
    modules = {p.stem for p in (ROOT / "tfsynth" / "commands").glob("*.py")} - {"__init__", "arguments"}
    assert {module for module, _ in cli.SUBCOMMANDS.values()} == {f"tfsynth.commands.{m}" for m in modules}
    assert cli.main(["--help"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert listed == set(cli.SUBCOMMANDS)


def test_unknown_subcommand_is_a_usage_error(capsys):
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.SUBCOMMANDS))
def test_every_subcommand_reaches_its_own_parser(name, capsys):
    """``tfsynth NAME --help`` runs NAME's own argument parser (a table entry pointing at another
    module, or a module whose main ignores argv, prints some other usage)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tfsynth {name} ")


def _entry_point() -> str:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    (line,) = [x for x in setup["options.entry_points"]["console_scripts"].splitlines() if x.strip()]
    return line


def test_console_script_is_declared_and_installed():
    """setup.cfg declares ``tfsynth = tfsynth.cli:main`` and the installed script runs it."""
    name, target = (part.strip() for part in _entry_point().split("="))
    assert (name, target) == ("tfsynth", "tfsynth.cli:main")
    script = Path(sys.executable).parent / "tfsynth"
    assert script.is_file(), f"{script}: not installed (pip install -e .)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == cli.usage() + "\n"


def test_import_tfsynth_leaves_onednn_alone_and_the_commands_turn_it_on(tmp_path):
    """A library import changes no process-wide setting; a command sets TF_ENABLE_ONEDNN_OPTS
    before TensorFlow loads, unless the user chose a value."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    probe = "import os, tfsynth, tfsynth.training.train; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout == "None\n"
    script = tmp_path / "probe.py"  # `tfsynth train --help`, then report the variable at exit
    script.write_text(
        "import atexit, os\n"
        "from tfsynth import cli\n"
        "atexit.register(lambda: print('ONEDNN=' + str(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))))\n"
        "cli.main(['train', '--help'])\n"
    )
    for user_value, expected in ((None, "1"), ("0", "0")):
        run_env = dict(env) if user_value is None else {**env, "TF_ENABLE_ONEDNN_OPTS": user_value}
        out = subprocess.run([sys.executable, str(script)], env=run_env, capture_output=True, text=True).stdout
        assert out.rstrip().endswith(f"ONEDNN={expected}"), out
