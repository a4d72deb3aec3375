"""The pre-run line, the slice-size warning and the wall-clock estimate `train` logs, on a fake clock."""

import argparse

import pytest

from tfsynth.commands import train as train_command
from tfsynth.training.run_estimate import RunEstimate, run_plan, size_warning


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def drive(callback, clock, steps_per_epoch, epochs, step_seconds, epoch_end_seconds=0.0, first_step_extra=0.0):
    """Plays ``fit``'s hooks: ``step_seconds(step)`` per step, an epoch end after each epoch."""
    callback.on_train_begin()
    step = callback.step
    for epoch in range(epochs):
        for batch in range(steps_per_epoch):
            callback.on_train_batch_begin(batch)
            clock.now += step_seconds(step) + (first_step_extra if step == 0 else 0.0)
            callback.on_train_batch_end(batch)
            step += 1
        callback.on_epoch_end(epoch)
        clock.now += epoch_end_seconds
    callback.on_train_end()


def test_run_plan_names_size_voxels_steps_and_phases():
    line = run_plan(240, [1.0, 1.0, 1.0], 8400, 4, 8400)
    assert line == (
        "training on 240x240 slices of 1 x 1 x 1 mm voxels: 8,400 steps of batch 4 on 1 replica "
        "(8,400 supervised warm-up, 0 adversarial)"
    )
    assert "2 replicas" in run_plan(80, 3.0, 100, 8, 50, replicas=2)
    assert "unknown voxel size" in run_plan(80, None, 100, 8, 50)
    assert run_plan(80, 3, 100, 4, 30, done_steps=40).endswith(
        "(30 supervised warm-up, 70 adversarial), resuming at step 40"
    )


def test_size_warning_only_for_much_larger_slices():
    assert size_warning(80, 80) is None
    assert size_warning(96, 80) is None  # 1.44x the area
    warning = size_warning(240, 80, [1, 1, 1])
    assert "240x240 (1 x 1 x 1 mm voxels)" in warning and "80x80" in warning and "9x" in warning
    assert "brats_1mm" in warning


def test_estimate_of_a_warm_up_only_run_is_its_wall_clock():
    clock, lines = FakeClock(), []
    callback = RunEstimate(1000, 1000, 250, log=lines.append, clock=clock)
    # A slow first step (tracing) and epoch ends of 4 s: both are in the estimate.
    drive(callback, clock, 250, 4, lambda step: 0.1, epoch_end_seconds=4.0, first_step_extra=30.0)
    real = 30.0 + 1000 * 0.1 + 4 * 4.0
    assert lines[0].startswith("estimated:") and "epoch ends not yet timed" in lines[0]
    assert lines[1].startswith("re-estimated with the first epoch end")
    assert callback.estimate == pytest.approx(real)
    assert lines[-1] == f"training took {real / 60:.1f} min for 1,000 steps (estimated {real / 60:.1f} min)"
    assert not any("adversarial steps priced" in line for line in lines)


def test_the_cheaper_warm_up_does_not_fool_the_estimate():
    clock, lines = FakeClock(), []
    callback = RunEstimate(1000, 300, 100, log=lines.append, clock=clock, adversarial_cost=2.0)
    # Adversarial steps cost 2.5x a warm-up step, not the prior's 2x.
    drive(callback, clock, 100, 10, lambda step: 0.1 if step < 300 else 0.25)
    first = lines[0]
    assert "adversarial steps priced at 2x a warm-up step until timed" in first
    assert float(first.split(": ")[1].split(" min")[0]) == pytest.approx((300 * 0.1 + 700 * 0.2) / 60, abs=0.05)
    phase_line = next(line for line in lines if line.startswith("re-estimated with timed adversarial steps"))
    assert "adversarial 0.250 s/step" in phase_line and "priced" not in phase_line
    real = 300 * 0.1 + 700 * 0.25
    assert callback.estimate == pytest.approx(real)


def test_adversarial_from_the_start_needs_no_prior():
    clock, lines = FakeClock(), []
    callback = RunEstimate(200, 0, 100, log=lines.append, clock=clock)
    drive(callback, clock, 100, 2, lambda step: 0.5)
    assert "adversarial 0.500 s/step" in lines[0] and "priced" not in lines[0]
    assert callback.estimate == pytest.approx(100.0)


def test_a_resumed_run_estimates_its_remaining_steps():
    clock, lines = FakeClock(), []
    callback = RunEstimate(1000, 1000, 100, start_step=600, log=lines.append, clock=clock)
    drive(callback, clock, 100, 4, lambda step: 0.2)
    assert "for 400 steps" in lines[0]
    assert callback.estimate == pytest.approx(400 * 0.2)


def test_too_short_a_run_logs_no_estimate():
    clock, lines = FakeClock(), []
    drive(RunEstimate(10, 10, 10, log=lines.append, clock=clock), clock, 10, 1, lambda step: 0.1)
    assert lines == []


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="skip_steps"):
        RunEstimate(10, 0, 10, skip_steps=0)


@pytest.mark.parametrize(("preset", "warns"), [(None, True), ("brats_1mm", False)])
def test_train_warns_before_it_starts_when_the_prepared_slices_outgrow_the_config(monkeypatch, capsys, preset, warns):
    monkeypatch.setattr(train_command, "load_manifest", lambda path: {"image_size": 240, "voxel_size_mm": [1, 1, 1]})
    flags = dict(epochs=None, steps_per_epoch=None, batch_size=None, precision=None, seed=None)
    args = argparse.Namespace(data="prepared", config=None, preset=preset, **flags)
    assert train_command.build_config(args).data.image_size == 240
    assert ("but this config was chosen for 80x80" in capsys.readouterr().err) == warns
