import os
import signal
import subprocess
import sys
import textwrap


def test_sigterm_runs_cleanup_of_atomic_writes(tmp_path):
    """A SIGTERM'd command leaves no temp folder: atomic cleanup runs as for Ctrl-C."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from tfsynth.atomic import atomic_directory
        from tfsynth.errors import cli_entry

        @cli_entry
        def main():
            with atomic_directory({str(tmp_path / "out")!r}) as tmp:
                (tmp / "shard").write_text("partial")
                print("writing", flush=True)
                time.sleep(60)

        sys.exit(main())
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_user_error_is_one_line_and_exit_2(capsys):
    from tfsynth.errors import TfsynthError, cli_entry

    @cli_entry
    def main():
        raise TfsynthError("scan.nii.gz: not a NIfTI file")

    assert main() == 2
    assert capsys.readouterr().err == "error: scan.nii.gz: not a NIfTI file\n"


def test_tf_error_message_keeps_the_reason_and_drops_graph_details():
    from tfsynth.errors import tf_error_message

    graph = (
        "Graph execution error:\n\nDetected at node Assert defined at (most recent call last):\n"
        "<stack traces unavailable>\n"
        'assertion failed: [unknown contrast name(s):] ["foo"]\n\t [[{{node Assert}}]]\n\t [[node x]]'
    )
    assert tf_error_message(graph) == 'assertion failed: [unknown contrast name(s):] ["foo"]'
    assert tf_error_message("Incompatible shapes: [2] vs. [3] [Op:AddV2]") == "Incompatible shapes: [2] vs. [3]"
    assert tf_error_message("  \n") == ""
