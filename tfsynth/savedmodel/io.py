"""Writing and reading tfsynth serving SavedModels: the graph of `tfsynth.savedmodel.graph` plus
``metadata.json`` (`tfsynth.savedmodel.metadata`), in float32 or bfloat16 compute.

`write_saved_model` is what training calls; `tfsynth.savedmodel.export` copies the result into TF
Serving's version layout. The signatures are declared in `tfsynth.savedmodel.contract`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfsynth.atomic import atomic_directory
from tfsynth.errors import TfsynthError
from tfsynth.savedmodel.contract import COMPUTE_DTYPES, DEFAULT_COMPUTE_DTYPE, KERAS_POLICIES, MIN_SIZE
from tfsynth.savedmodel.metadata import build_metadata, read_metadata, write_metadata


def _serving_generator(generator, compute_dtype: str):
    """``generator`` if it computes in ``compute_dtype``, else a twin with its weights that does.

    Keras keeps mixed-precision variables in float32, so the twin's weights are exact; only
    the compute dtype changes.
    """
    from tfsynth.models.precision import precision_scope

    if generator.compute_dtype == compute_dtype:
        return generator
    config = {key: value for key, value in generator.get_config().items() if key != "dtype"}
    with precision_scope(KERAS_POLICIES[compute_dtype]):
        twin = type(generator).from_config(config)
        _build(twin)
    twin.set_weights(generator.get_weights())
    return twin


def check_compute_dtype(compute_dtype: str) -> str:
    """``compute_dtype`` if it is one of `COMPUTE_DTYPES` (also accepts ``bf16``, ``fp32``).

    Raises:
        TfsynthError: anything else.
    """
    name = {"bf16": "bfloat16", "mixed_bfloat16": "bfloat16", "fp32": "float32"}.get(compute_dtype, compute_dtype)
    if name not in COMPUTE_DTYPES:
        raise TfsynthError(f"precision {compute_dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
    return name


def _build(generator) -> None:
    """Creates the generator's variables (a no-op if built) so no variable is made inside a loop."""
    import numpy as np

    label = np.zeros((1,), np.int32)
    generator((np.zeros((1, MIN_SIZE, MIN_SIZE, 1), np.float32), label, label))


def write_saved_model(
    generator,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    compute_dtype: str = DEFAULT_COMPUTE_DTYPE,
) -> Path:
    """Writes a self-contained serving SavedModel of ``generator`` plus ``metadata.json``, atomically.

    Args:
        generator: a `tfsynth.models.StarGANGenerator` (any training precision).
        path: the SavedModel directory to create. An existing SavedModel there is replaced
            (a run re-exporting itself); any other existing directory is an error.
        metadata: see `tfsynth.savedmodel.metadata.build_metadata`.
        compute_dtype: ``float32`` or ``bfloat16``: the precision of the generator's convolutions
            in the graph (see `tfsynth.savedmodel.contract.COMPUTE_DTYPES`). Signature inputs and outputs stay float32.

    Returns:
        ``path`` as a Path.

    Raises:
        TfsynthError: ``path`` exists and is not a SavedModel, an unknown ``compute_dtype``, or
            metadata is not JSON-serialisable.
    """
    path = Path(path)
    compute_dtype = check_compute_dtype(compute_dtype)
    if path.exists() and not (path / "saved_model.pb").is_file():
        raise TfsynthError(f"{path} exists and is not a SavedModel directory; refusing to overwrite it")
    _build(generator)
    info = build_metadata(generator, metadata, compute_dtype)
    with atomic_directory(path, replace=True) as tmp:
        save(generator, tmp, info, compute_dtype)
    return path


def save(generator, directory: Path, info: dict[str, Any], compute_dtype: str) -> None:
    """Saves the serving module of ``generator`` in ``compute_dtype`` and ``info`` as metadata.json."""
    import tensorflow as tf

    from tfsynth.savedmodel.graph import SynthesisModule, signatures

    module = SynthesisModule(
        _serving_generator(generator, compute_dtype), info["image_size"], info.get("mirror_average_axis"), info
    )
    tf.saved_model.save(module, str(directory), signatures=signatures(module))
    write_metadata(directory, info)


def generator_from_saved_model(saved_model_dir: str | os.PathLike):
    """Rebuilds the float32 Keras generator of a tfsynth SavedModel from its own variables.

    Uses ``metadata.json``'s ``model.config`` for the architecture and the module's
    ``generator_variables`` (saved in `StarGANGenerator.variables` order) for the weights.

    Raises:
        TfsynthError: no metadata, or variables that do not fit the architecture.
    """
    import tensorflow as tf

    from tfsynth.models import generator as generators
    from tfsynth.models.precision import precision_scope

    saved_model_dir = Path(saved_model_dir)
    try:
        model = read_metadata(saved_model_dir).model
        config = model.get("config")
        if not isinstance(config, dict):
            raise KeyError("model.config")
        # Format 1 exports have no class entry (they hold the StarGAN reference); formats 1 and 2
        # name the StarGAN reference "Generator".
        cls = {
            "Generator": generators.StarGANGenerator,
            "StarGANGenerator": generators.StarGANGenerator,
            "UNetGenerator": generators.UNetGenerator,
        }[model.get("class", "Generator")]
        variables = tf.saved_model.load(str(saved_model_dir)).generator_variables
    except (OSError, KeyError, AttributeError, ValueError) as error:
        raise TfsynthError(
            f"{saved_model_dir}: cannot rebuild the generator ({type(error).__name__}: {error})"
        ) from None
    with precision_scope("float32"):
        generator = cls.from_config({k: v for k, v in config.items() if k != "dtype"})
        _build(generator)
    try:
        generator.set_weights([v.numpy() for v in variables])
    except ValueError as error:
        raise TfsynthError(f"{saved_model_dir}: variables do not fit model.config ({error})") from None
    return generator
