"""The serving clients' completion mode: the request they build, whole cases, ``tfsynth request --complete``.

The transport is replaced by a recorder here; the same calls against a served export run in
test_serving.py.
"""

from __future__ import annotations

import contextlib
import shutil

import nibabel as nib
import numpy as np
import pytest

from tfsynth.clients.grpc_client import BaseClient
from tfsynth.clients.volumes import as_channels
from tfsynth.commands import request
from tfsynth.data.normalize import percentile_normalize
from tfsynth.errors import TfsynthError


class RecordingClient(BaseClient):
    """A client whose server scales each channel by its maximum and returns their mean."""

    def _endpoint(self, address):
        return address

    def _connect(self):
        self.requests = []

    def _predict(self, signature, inputs):
        self.requests.append((signature, inputs))
        image = inputs["image"]
        scaled = image / np.maximum(image.max(axis=(0, 1, 2), keepdims=True), 1e-6)
        return scaled.mean(axis=-1).astype(np.float32)

    def close(self):
        pass


def test_complete_sends_named_channels_to_the_complete_signatures():
    client = RecordingClient("fake")
    a, b = np.ones((2, 16, 16)), np.zeros((2, 16, 16))
    client.complete({"t1": a, "t2w": b}, "flair")
    signature, inputs = client.requests[-1]
    assert signature == "complete"
    assert inputs["image"].shape == (2, 16, 16, 2) and inputs["image"].dtype == np.float32
    np.testing.assert_array_equal(inputs["image"][..., 0], a)
    assert inputs["sources"] == ["t1", "t2w"] and inputs["target"] == ["flair"]
    client.complete({"t1": a}, ["t2", "t2"], normalized=True)
    assert client.requests[-1][0] == "complete_normalized" and client.requests[-1][1]["target"] == ["t2", "t2"]


def test_as_channels_errors():
    with pytest.raises(TfsynthError, match="at least one input contrast"):
        as_channels({})
    with pytest.raises(TfsynthError, match=r"share one \[N, H, W\] shape, got t1 \(1, 16, 16\), t2 \(2, 16, 16\)"):
        as_channels({"t1": np.zeros((1, 16, 16)), "t2": np.zeros((2, 16, 16))})
    with pytest.raises(TfsynthError, match=r"slices must be an array \[N, H, W\]"):
        as_channels({"t1": np.zeros((16, 16))})


@pytest.fixture()
def case_dir(phantom_cohort, tmp_path):
    """One phantom case without its FLAIR."""
    source = sorted(p for p in phantom_cohort.iterdir() if p.is_dir())[0]
    folder = tmp_path / "in" / source.name
    shutil.copytree(source, folder)
    next(folder.glob("*-t2f.nii.gz")).unlink()
    return folder


def test_complete_case_writes_the_missing_file_on_the_input_grid(case_dir, tmp_path):
    client = RecordingClient("fake")
    path = client.complete_case(case_dir, tmp_path / "out")
    assert path.name == f"{case_dir.name}-t2f.nii.gz"
    ((signature, inputs),) = client.requests  # one request holds the whole case
    assert signature == "complete_normalized" and inputs["sources"] == ["t1", "t1c", "t2"]
    assert inputs["target"] == ["flair"] and 0.0 <= inputs["image"].min() and inputs["image"].max() <= 1.0
    reference = nib.load(next(case_dir.glob("*-t1n.nii.gz")))
    written = nib.load(path)
    np.testing.assert_array_equal(written.affine, reference.affine)
    raw = {
        s: np.asarray(nib.load(next(case_dir.glob(f"*-{s}.nii.gz"))).dataobj, np.float32) for s in ("t1n", "t1c", "t2w")
    }
    brain = np.any([v != 0 for v in raw.values()], axis=0)
    # Each contrast is sent normalised over its own brain on the input's grid (its maximum is 1).
    expected = np.mean([percentile_normalize(v)[0] for v in raw.values()], axis=0) * brain
    np.testing.assert_allclose(written.get_fdata(), expected, atol=1e-5)
    assert inputs["image"].max(axis=(0, 1, 2)) == pytest.approx([1.0, 1.0, 1.0])
    assert client.complete_case(case_dir, tmp_path / "out") is None  # kept, with a note
    client.complete_case(case_dir, tmp_path / "out", overwrite=True)
    resampled = client.complete_case(case_dir, tmp_path / "r", voxel_size_mm=2.0)
    assert client.requests[-1][1]["image"].shape[1:3] == (120, 120)  # 4 mm phantom sent at 2 mm
    assert nib.load(resampled).shape == reference.shape


def test_complete_case_errors(case_dir, phantom_cohort, tmp_path):
    client = RecordingClient("fake")
    with pytest.raises(TfsynthError, match="holds 4 cases; give one case folder"):
        client.complete_case(phantom_cohort, tmp_path / "out")
    next(case_dir.glob("*-t2w.nii.gz")).unlink()
    with pytest.raises(TfsynthError, match=r"2 contrasts missing \(t2, flair\)"):
        client.complete_case(case_dir, tmp_path / "out")
    with pytest.raises(TfsynthError, match="voxel size must be one or three positive numbers"):
        client.complete_case(case_dir, tmp_path / "out", voxel_size_mm=[1.0, 2.0])
    assert not (tmp_path / "out").exists() and client.requests == []


def test_request_command_complete_mode(case_dir, tmp_path, monkeypatch, capsys):
    clients = []

    def fake_client(args):
        clients.append(RecordingClient("fake"))
        assert args.address == "localhost:1" and args.voxel_size == [4.0]
        return contextlib.closing(clients[-1])

    monkeypatch.setattr(request, "open_client", fake_client)
    argv = ["--address", "localhost:1", "--complete", str(case_dir), str(tmp_path / "out"), "--voxel-size", "4"]
    assert request.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / f"{case_dir.name}-t2f.nii.gz")
    assert request.main(argv) == 0
    assert "already written, skipped" in capsys.readouterr().err
    assert request.main([*argv, "--overwrite"]) == 0
    with pytest.raises(SystemExit):
        request.main(["--address", "localhost:1", "--complete", str(case_dir)])  # no OUT_DIR
    # Both voxel-size flags at once is a usage error (with neither, the client asks the model).
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        request.main(
            [
                "--address",
                "localhost:1",
                "--complete",
                str(case_dir),
                str(tmp_path / "new"),
                "--voxel-size",
                "4",
                "--no-resample",
            ]
        )
    assert exit_info.value.code == 2 and "--voxel-size" in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and len(clients) == 3
