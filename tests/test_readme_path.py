"""The README's documented path, run as written: phantom -> prepare -> train -> evaluate ->
synthesize -> export -> a dev server -> request, each step consuming what the previous one wrote.

The commands are read from README.md's "The whole path, step by step" block, so the test runs
what a user reads; only a tiny cohort and training budget are appended (argparse keeps the last
value of a repeated option) and the server's ports are free ones instead of 8500/8501.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import TINY, free_ports

from tfsynth import cli

README = Path(__file__).resolve().parents[1] / "README.md"
# Appended to the documented commands: a cohort and a training run of seconds.
TINY_FLAGS = {
    "phantom": ["--subjects", "3", "--voxel-size", "4"],
    "train": ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4"],
    "evaluate": ["--quiet"],
    "synthesize": ["--quiet"],
}


def documented_commands() -> list[list[str]]:
    """The command lines of README.md's step-by-step block, split into words."""
    text = README.read_text()
    block = text.split("### The whole path, step by step", 1)[1].split("\n#", 1)[0]
    lines = [line.strip() for line in block.splitlines() if line.startswith("    ")]
    return [shlex.split(line.rstrip("&").strip()) for line in lines if line.strip()]


def subcommand(words: list[str]) -> tuple[str, list[str]]:
    """``python -m tfsynth.X args`` / ``tfsynth X args`` -> ``("X", args)``."""
    if words[:2] == ["python", "-m"]:
        return words[2].removeprefix("tfsynth."), words[3:]
    assert words[0] == "tfsynth", words
    return words[1], words[2:]


@pytest.mark.slow
def test_the_readme_path_runs_end_to_end(tmp_path, monkeypatch):
    from dev_rest_gateway import RestDevModelServer

    from tfsynth.clients.dev_servicer import ModelEntry
    from tfsynth.commands.dev_server import build_parser

    commands = [subcommand(words) for words in documented_commands()]
    assert [name for name, _ in commands] == [
        "phantom", "prepare", "train", "evaluate", "synthesize", "export", "dev-server", "request",
    ]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    config = {key: value for key, value in TINY.items() if key != "data"}  # image size: from manifest.json
    Path("tiny.json").write_text(json.dumps(config))
    flags = {**TINY_FLAGS, "train": [*TINY_FLAGS["train"], "--config", "tiny.json"]}
    server = None
    try:
        for name, args in commands:
            if name == "dev-server":
                # The documented flags must be the packaged dev server's; the test-side subclass
                # only adds the REST API the last step below checks the REST client against.
                base = Path(build_parser().parse_args(args).model_base_path)
                grpc_port, rest_port = free_ports(2)
                server = RestDevModelServer([ModelEntry("tfsynth", base)], port=grpc_port, rest_port=rest_port).start()
                continue
            if name == "request":
                args = [server.address if a == "localhost:8500" else a for a in args]
            assert cli.main([name, *args, *flags.get(name, [])]) == 0, (name, args)
            check_step(name, args)
        # The same request over REST answers the same.
        request = dict(commands)["request"]
        rest = [server.rest_address if a == "localhost:8500" else a for a in request]
        rest[-1] = "requested_rest"
        assert cli.main(["request", *rest, "--rest"]) == 0
        for file in Path("requested").iterdir():
            np.testing.assert_allclose(
                nib.load(Path("requested_rest") / file.name).get_fdata(), nib.load(file).get_fdata(), atol=1e-5
            )
    finally:
        if server is not None:
            server.stop()


def check_step(name: str, args: list[str]) -> None:
    """What each step must have written for the next one."""
    case = Path("data/cohort/BraTS-GLI-00000-000")
    if name == "phantom":
        assert len(list(Path("data/cohort").iterdir())) == 3
    elif name == "prepare":
        manifest = json.loads(Path("data/prepared/manifest.json").read_text())
        assert manifest["image_size"] == 60 and manifest["slice_orientation"] == "LPS"
    elif name == "train":
        meta = json.loads(Path("runs/mine/saved_model/metadata.json").read_text())
        assert meta["image_size"] == 60 and meta["voxel_size_mm"] == [4.0, 4.0, 4.0]
    elif name == "evaluate":
        summary = Path("runs/mine/evaluation/summary.md").read_text()
        assert "### PSNR (dB)" in summary
    elif name == "synthesize":
        source = nib.load(case / "BraTS-GLI-00000-000-t1n.nii.gz")
        written = sorted(p.name for p in Path("synth").iterdir())
        assert written == [f"BraTS-GLI-00000-000-{c}.nii.gz" for c in ("t1c", "t2f", "t2w")]
        for file in written:
            image = nib.load(Path("synth") / file)
            assert image.shape == source.shape and np.array_equal(image.affine, source.affine)
            assert re.match(rb"tfsynth: \w+ synthesised from t1 by tfsynth", image.header["descrip"].tobytes())
    elif name == "export":
        assert json.loads(Path("models/tfsynth/1/metadata.json").read_text())["serving"]["version"] == 1
    elif name == "request":
        assert sorted(p.name for p in Path("requested").iterdir()) == [
            "BraTS-GLI-00000-000-t2f.nii.gz",
            "BraTS-GLI-00000-000-t2w.nii.gz",
        ]
