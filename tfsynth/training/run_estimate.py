"""What a training run is about to cost, said before and during its first steps.

`run_plan` is the line ``train`` logs before its first step (slice size, voxel size, steps,
batch, replicas); `size_warning` says when the prepared slices are far larger than the size a
config was chosen for; `RunEstimate` is a Keras callback that times the first steps of each
training phase (the supervised warm-up, then the adversarial phase) and the first epoch's end
(validation, checkpoint, image grid) and logs the run's wall-clock from them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import keras

# A slice this many times the area of the size a config was chosen for draws a warning: compute
# and activation memory per step grow with the area, so the schedule no longer costs what it did.
LARGE_AREA_RATIO = 2.0
# Prior for an adversarial step's time in warm-up steps, used only until adversarial steps have
# been timed: the critic update, its gradient penalty and the cycle pass come on top of the
# generator update (the default's ratio as `tfsynth bench` measures it; docs/speed.md).
ADVERSARIAL_STEP_COST = 2.3


def _voxel_text(voxel_size_mm: Sequence[float] | float | None) -> str:
    if voxel_size_mm is None:
        return "unknown voxel size"
    sizes = [voxel_size_mm] * 3 if isinstance(voxel_size_mm, (int, float)) else list(voxel_size_mm)
    return " x ".join(f"{float(s):g}" for s in sizes) + " mm voxels"


def run_plan(
    slice_size: int,
    voxel_size_mm: Sequence[float] | float | None,
    steps: int,
    batch_size: int,
    warmup_steps: int,
    replicas: int = 1,
    done_steps: int = 0,
) -> str:
    """The line ``train`` logs before its first step.

    Args:
        slice_size: H = W of the prepared slices, in voxels.
        voxel_size_mm: ``[x, y, z]`` in mm (``manifest.json`` ``voxel_size_mm``), one number, or None.
        steps: generator steps of the whole run.
        batch_size: the global batch (split over the replicas).
        warmup_steps: the first this many steps are the supervised warm-up.
        replicas: devices the batch is split over.
        done_steps: steps an interrupted run already made (a resumed run starts there).

    Returns:
        e.g. ``"training on 80x80 slices of 3 x 3 x 3 mm voxels: 8,400 steps of batch 4 on 1
        replica (8,400 supervised warm-up, 0 adversarial)"``.
    """
    warmup = min(warmup_steps, steps)
    line = (
        f"training on {slice_size}x{slice_size} slices of {_voxel_text(voxel_size_mm)}: {steps:,} steps of "
        f"batch {batch_size} on {replicas} replica{'s' if replicas != 1 else ''} "
        f"({warmup:,} supervised warm-up, {steps - warmup:,} adversarial)"
    )
    if done_steps:
        line += f", resuming at step {done_steps:,}"
    return line


def size_warning(slice_size: int, chosen_size: int, voxel_size_mm: Sequence[float] | float | None = None) -> str | None:
    """A warning when the prepared slices are much larger than the size the config was chosen for.

    Args:
        slice_size: H = W of the prepared slices.
        chosen_size: ``data.image_size`` of the config (or preset) before the prepared data replaced it.
        voxel_size_mm: the prepared data's voxel size, named in the warning.

    Returns:
        The warning text, or None when the slice area is below `LARGE_AREA_RATIO` times the chosen one.
    """
    ratio = (slice_size / chosen_size) ** 2
    if ratio < LARGE_AREA_RATIO:
        return None
    return (
        f"the prepared slices are {slice_size}x{slice_size} ({_voxel_text(voxel_size_mm)}) but this config was "
        f"chosen for {chosen_size}x{chosen_size}: each step costs about {ratio:.0f}x the compute and activation "
        "memory, and the network's receptive field covers a smaller part of the brain. Prepare the data at a "
        "coarser voxel size, or use a preset chosen for this size (--preset brats_2mm or brats_1mm; "
        "docs/training.md)"
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


class RunEstimate(keras.callbacks.Callback):
    """Logs the run's wall-clock as estimated from its first steps, and re-estimates as it learns more.

    Each phase's first ``skip_steps`` steps are not timed: the first traces the step function (and
    the switch to the adversarial phase traces it again), the next fill the input pipeline. The
    next ``timed_steps`` give the phase's seconds per step. Until adversarial steps have been
    timed they are priced at ``adversarial_cost`` warm-up steps, and the estimate says so. The
    first epoch's end (the time from its last step to the next epoch's first) prices every
    later epoch end. An estimate is logged when the first phase has been timed, again when the
    first epoch end and the adversarial phase have been, and the real time at the end.

    The estimate is of the training loop (`keras.Model.fit`, from its first step to the end of
    its last epoch), not of data preparation or export before and after it.

    Args:
        total_steps: generator steps of the whole run.
        warmup_steps: the first this many steps are warm-up steps.
        steps_per_epoch: steps between epoch ends.
        start_step: steps already made (a resumed run).
        log: where the lines go.
        clock: seconds, monotonic (a fake one in tests).
        skip_steps: untimed steps at the start of each phase, at least 1 (the first traces).
        timed_steps: timed steps per phase before an estimate, at least 1.
        adversarial_cost: an adversarial step's time in warm-up steps until measured.

    Raises:
        ValueError: ``skip_steps`` or ``timed_steps`` below 1, or ``steps_per_epoch`` below 1.
    """

    def __init__(
        self,
        total_steps: int,
        warmup_steps: int,
        steps_per_epoch: int,
        start_step: int = 0,
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
        skip_steps: int = 3,
        timed_steps: int = 20,
        adversarial_cost: float = ADVERSARIAL_STEP_COST,
    ):
        super().__init__()
        if min(skip_steps, timed_steps, steps_per_epoch) < 1:
            raise ValueError(
                f"skip_steps, timed_steps and steps_per_epoch must be >= 1, got {skip_steps}, {timed_steps}, "
                f"{steps_per_epoch}"
            )
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.step = int(start_step)
        self.run_steps = self.total_steps - self.step
        self.log = log
        self.clock = clock
        self.skip_steps = int(skip_steps)
        self.timed_steps = int(timed_steps)
        self.adversarial_cost = float(adversarial_cost)
        self.started: float | None = None
        self.epoch_end_seconds: float | None = None
        self.estimate: float | None = None
        # Per phase ("warm-up", "adversarial"): steps seen, clock at the end of the last skipped
        # step, and seconds per step once timed.
        self._seen = {"warm-up": 0, "adversarial": 0}
        self._timing_start: dict[str, float] = {}
        self._per_step: dict[str, float] = {}
        self._last_batch_end: float | None = None
        self._epoch_ended_at: float | None = None

    def _phase(self, step: int) -> str:
        return "warm-up" if step < self.warmup_steps else "adversarial"

    def on_train_begin(self, logs=None):
        if self.started is None:
            self.started = self.clock()

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch_ended_at is not None and self.epoch_end_seconds is None:
            self.epoch_end_seconds = self.clock() - self._epoch_ended_at
            self._log_estimate("re-estimated with the first epoch end")
        self._epoch_ended_at = None

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        self._last_batch_end = now
        phase = self._phase(self.step)
        self.step += 1
        self._seen[phase] += 1
        seen = self._seen[phase]
        if seen == self.skip_steps:
            self._timing_start[phase] = now
        if phase not in self._per_step and seen == self.skip_steps + self.timed_steps:
            self._per_step[phase] = (now - self._timing_start[phase]) / self.timed_steps
            first = len(self._per_step) == 1
            self._log_estimate("estimated" if first else f"re-estimated with timed {phase} steps")

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_end_seconds is None and self._last_batch_end is not None and self.step < self.total_steps:
            self._epoch_ended_at = self._last_batch_end

    def on_train_end(self, logs=None):
        if self.step >= self.total_steps and self.estimate is not None:
            self.log(
                f"training took {_minutes(self.clock() - self.started)} for {self.run_steps:,} steps "
                f"(estimated {_minutes(self.estimate)})"
            )

    def remaining_seconds(self) -> float:
        """Seconds from now to the end of the last epoch, by what has been timed so far."""
        warmup = self._per_step.get("warm-up")
        adversarial = self._per_step.get("adversarial", (warmup or 0.0) * self.adversarial_cost)
        left_warmup = max(0, self.warmup_steps - self.step)
        left_adversarial = self.total_steps - self.step - left_warmup
        seconds = left_warmup * (warmup or 0.0) + left_adversarial * adversarial
        # Epoch ends still to come, the last one included (validation, best-epoch checkpoint).
        epoch_ends = -(-self.total_steps // self.steps_per_epoch) - self.step // self.steps_per_epoch
        return seconds + epoch_ends * (self.epoch_end_seconds or 0.0)

    def _log_estimate(self, what: str) -> None:
        now = self.clock()
        left = self.remaining_seconds()
        self.estimate = now - self.started + left
        rates = ", ".join(f"{phase} {seconds:.3f} s/step" for phase, seconds in self._per_step.items())
        notes = [rates]
        if "adversarial" not in self._per_step and self.total_steps > max(self.step, self.warmup_steps):
            notes.append(f"adversarial steps priced at {self.adversarial_cost:g}x a warm-up step until timed")
        if self.epoch_end_seconds is None:
            notes.append("epoch ends not yet timed")
        else:
            notes.append(f"epoch end {self.epoch_end_seconds:.1f} s")
        self.log(
            f"{what}: {_minutes(self.estimate)} for {self.run_steps:,} steps, "
            f"{_minutes(left)} left ({'; '.join(notes)})"
        )
