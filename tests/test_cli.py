import subprocess
import sys

from tfsynth import cli


def test_help_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_is_a_usage_error(capsys):
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_every_subcommand_module_has_a_main():
    import importlib

    for module_name, _ in cli.SUBCOMMANDS.values():
        assert callable(importlib.import_module(module_name).main), module_name


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "tfsynth.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "prepare" in result.stdout
