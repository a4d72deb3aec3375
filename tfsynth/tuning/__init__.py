"""The loss-weight sweep library under ``tfsynth tune`` (the command is `tfsynth.commands.tune`).

* `tfsynth.tuning.space`: the searched weights, their ranges, hyperparameters -> `Config`.
* `tfsynth.tuning.results`: the results table (``results.csv``, ``results.md``).
* `tfsynth.tuning.hypermodel`: Keras Tuner's hypermodel and tuner classes.
* `tfsynth.tuning.sweep`: `run_sweep`, the whole sweep in a resumable directory.
"""
