import json

import pytest

from tfsynth.config import Config
from tfsynth.errors import TfsynthError


def test_json_round_trip_keeps_every_value(tmp_path):
    config = Config()
    config.loss.lambda_pix = 3.5
    config.model.residual_blocks = 2
    config.train.precision = "mixed_bfloat16"
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert Config.from_json_file(path) == config


def test_partial_dict_takes_defaults_and_ints_are_accepted_for_floats():
    config = Config.from_dict({"loss": {"lambda_rec": 5}})
    assert config.loss.lambda_rec == 5.0 and isinstance(config.loss.lambda_rec, float)
    assert config.model == Config().model


def test_tumor_weight_is_one_number_for_every_label_or_one_per_label():
    """A number stands for all three labels; either form is stored, and round-trips, as three floats."""
    assert Config().loss.tumor_weight == [1.0, 1.0, 1.0]
    assert Config.from_dict({"loss": {"tumor_weight": 3}}).loss.tumor_weight == [3.0, 3.0, 3.0]
    config = Config.from_dict({"loss": {"tumor_weight": [3, 3, 1]}})
    assert config.loss.tumor_weight == [3.0, 3.0, 1.0]
    assert Config.from_dict(json.loads(config.to_json())) == config


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"loss": {"lambda_typo": 1.0}}, "unknown key config.loss.lambda_typo"),
        ({"optimizer": {}}, "unknown key config.optimizer"),
        ({"loss": {"lambda_cls": -1.0}}, "loss.lambda_cls"),
        ({"loss": {"n_critic": 0}}, "loss.n_critic"),
        ({"data": {"image_size": 30}}, "multiple of 4"),
        ({"train": {"precision": "fp8"}}, "train.precision"),
        ({"train": {"batch_size": "8"}}, "train.batch_size must be of type int"),
        ({"model": []}, "config.model must be a JSON object"),
        ({"data": {"subset_sizes": [0.5, 0.5]}}, "data.subset_sizes must be 3"),
        ({"data": {"subset_sizes": [0.5, 0.6, -0.1]}}, "data.subset_sizes must be 3"),
        ({"data": {"subset_sizes": [0.5, 0.2, 0.2]}}, "data.subset_sizes must be 3"),
        ({"data": {"subset_sizes": [1, 0, True]}}, "data.subset_sizes must be 3"),
        ({"data": {"subset_sizes": "1,0,0"}}, "data.subset_sizes must be of type list"),
        ({"loss": {"tumor_weight": [3.0, 1.0]}}, "loss.tumor_weight must be a non-negative number or 3"),
        ({"loss": {"tumor_weight": -2}}, "loss.tumor_weight must be a non-negative number or 3"),
        ({"loss": {"tumor_weight": "3"}}, "loss.tumor_weight must be a non-negative number or 3"),
        ({"model": {"any_subset": True, "generator": "stargan"}}, "any_subset needs model.generator 'unet'"),
    ],
)
def test_bad_values_are_one_clear_error(values, fragment):
    with pytest.raises(TfsynthError, match=fragment.replace(".", r"\.")):
        Config.from_dict(values)


def test_unreadable_config_file_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(TfsynthError, match="broken.json: not valid JSON"):
        Config.from_json_file(path)
    with pytest.raises(TfsynthError, match="no such file"):
        Config.from_json_file(tmp_path / "missing.json")


def test_to_json_is_plain_json():
    assert json.loads(Config().to_json())["loss"]["lambda_gp"] == 10.0


def test_presets_are_valid_and_named():
    from tfsynth.training.presets import PRESETS, preset

    completion = preset("completion").to_dict()
    assert completion["model"].pop("any_subset") is True
    # BraSyn's task (three inputs) is drawn more often than the paper's (one): docs/completion.md.
    sizes = preset("completion").training_subset_sizes()
    assert sizes[2] > sizes[0] and sizes != Config().data.subset_sizes
    assert completion["model"] == {k: v for k, v in Config().to_dict()["model"].items() if k != "any_subset"}
    assert preset("stargan_reference").model.any_subset is False
    reference = preset("stargan_reference")
    m = reference.model
    assert (m.generator, m.generator_filters, m.residual_blocks, m.upsampling) == ("stargan", 64, 6, "transposed")
    assert reference.data.image_size == 128 and reference.loss.n_critic == 5 and reference.loss.lambda_adv == 1.0
    tiny = preset("tiny")
    assert (tiny.data.image_size, tiny.model.generator_filters, tiny.train.epochs * tiny.train.steps_per_epoch) == (
        32,
        8,
        6,
    )
    for name in PRESETS:
        Config.from_dict(preset(name).to_dict()).validate()
    with pytest.raises(TfsynthError, match="unknown preset 'huge'"):
        preset("huge")


def test_any_subset_is_off_unless_asked_and_then_trains_on_the_subset_sizes():
    assert Config().training_subset_sizes() is None
    config = Config.from_dict({"model": {"any_subset": True}, "data": {"subset_sizes": [0, 1, 0]}})
    assert config.training_subset_sizes() == [0, 1, 0]
    assert Config.from_dict(config.to_dict()) == config
