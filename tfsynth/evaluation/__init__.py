"""The evaluation library under ``tfsynth evaluate`` (the command is `tfsynth.commands.evaluate`).

* `tfsynth.evaluation.patients`: a cohort as `Patient` slices on the model's canvas, read from a
  prepared split or a BraTS-layout folder.
* `tfsynth.evaluation.baseline_source`: where the intensity-mapping baseline is fitted.
* `tfsynth.evaluation.scoring`: per-patient metrics of every method, and their summary.
* `tfsynth.evaluation.report`: metrics.csv, summary.json, summary.md and figures.
* `tfsynth.evaluation.run`: the whole protocol, from paths to a written report.
* `tfsynth.evaluation.brasyn`, `tfsynth.evaluation.brasyn_report`: the BraSyn protocol's scores and
  its run over a cohort; its tables and figures (`tfsynth.evaluation.completion` writes the report,
  ``tfsynth evaluate --protocol brasyn`` is the command).
"""
