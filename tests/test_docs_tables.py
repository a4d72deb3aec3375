"""The documented tables that must not drift: the serving signatures and the config defaults.

Each table is parsed from its page and compared with the declarations both ways: a row the code
lacks, a declaration the table lacks and a value that differs all fail, naming the row; a failing
signature table's message ends with the rows the code declares, ready to paste.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

# The declarations the tables document (kept together: the modules may move).
from tfsynth.config import Config
from tfsynth.savedmodel.contract import metadata_signatures

# Every signature an export can have, as metadata.json's ``signatures`` section states each one:
# {name: {"inputs": {tensor: {"dtype", "shape", "description"}}, "outputs": {...}, "preprocessing"}}.
DECLARED_SIGNATURES = metadata_signatures(completion=True)

ROOT = Path(__file__).resolve().parents[1]
# Pages holding the signature tables: the serving guide and the deployment folder's guide.
SIGNATURE_PAGES = [ROOT / "docs" / "serving.md", ROOT / "export" / "README.md"]
CONFIG_PAGE = ROOT / "docs" / "training.md"


def table_rows(text: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header row starts with ``header``, as stripped cells."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"expected one table headed {header!r}, found {len(starts)}"
    rows = []
    for line in lines[starts[0] + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def unquote(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), f"expected a `code` cell, got {cell!r}"
    return cell[1:-1]


def compare(documented: dict, declared: dict, what: str, expected_rows: str = "") -> None:
    """Fails naming every missing, extra and differing key (then ``expected_rows``, if given)."""
    problems = [f"{key}: in the code, not in {what}" for key in declared.keys() - documented.keys()]
    problems += [f"{key}: in {what}, not in the code" for key in documented.keys() - declared.keys()]
    problems += [
        f"{key}: {what} says {documented[key]!r}, the code {declared[key]!r}"
        for key in documented.keys() & declared.keys()
        if documented[key] != declared[key]
    ]
    assert not problems, "\n".join(sorted(problems)) + (
        f"\n\nThe code declares:\n{expected_rows}" if expected_rows else ""
    )


def declared_tensors() -> dict:
    """(signature, input|output, tensor) -> (dtype, shape, meaning), as metadata.json states them."""
    tensors = {}
    for signature, doc in DECLARED_SIGNATURES.items():
        for kind in ("inputs", "outputs"):
            for name, spec in doc[kind].items():
                shape = "[" + ", ".join(spec["shape"]) + "]"
                tensors[(signature, kind[:-1], name)] = (spec["dtype"], shape, spec["description"])
    return tensors


def documented_tensors(text: str) -> dict:
    tensors = {}
    for row in table_rows(text, "| signature | tensor |"):
        signature, kind, name, dtype, shape, meaning = row
        key = (unquote(signature), kind, unquote(name))
        assert key not in tensors, f"row {key} appears twice"
        tensors[key] = (dtype, shape, meaning)
    return tensors


def signature_table_rows() -> str:
    """The tensor table's body rows as the declarations give them."""
    return "\n".join(
        f"| `{signature}` | {kind} | `{name}` | {dtype} | {shape} | {meaning} |"
        for (signature, kind, name), (dtype, shape, meaning) in declared_tensors().items()
    )


@pytest.mark.parametrize("page", SIGNATURE_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_signature_table_is_the_contract(page):
    documented = documented_tensors(page.read_text())
    compare(documented, declared_tensors(), str(page.relative_to(ROOT)), signature_table_rows())


@pytest.mark.parametrize("page", SIGNATURE_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_preprocessing_table_is_the_contract(page):
    documented = {unquote(sig): text for sig, text in table_rows(page.read_text(), "| signature | preprocessing")}
    declared = {sig: doc["preprocessing"] for sig, doc in DECLARED_SIGNATURES.items()}
    rows = "\n".join(f"| `{sig}` | {text} |" for sig, text in declared.items())
    compare(documented, declared, str(page.relative_to(ROOT)), rows)


def documented_defaults(text: str) -> dict:
    defaults = {}
    for key, value, _meaning in table_rows(text, "| key | default |"):
        defaults[unquote(key)] = json.loads(unquote(value))
    return defaults


def declared_defaults() -> dict:
    return {
        f"{section.name}.{field}": value
        for section in dataclasses.fields(Config)
        for field, value in Config().to_dict()[section.name].items()
    }


def test_config_defaults_table_is_the_config():
    compare(documented_defaults(CONFIG_PAGE.read_text()), declared_defaults(), "docs/training.md")


def test_a_drifted_table_fails():
    text = CONFIG_PAGE.read_text()
    drifted = text.replace("| `train.steps_per_epoch` | `840` |", "| `train.steps_per_epoch` | `841` |")
    with pytest.raises(AssertionError, match="train.steps_per_epoch"):
        compare(documented_defaults(drifted), declared_defaults(), "docs/training.md")
    without = "\n".join(line for line in text.splitlines() if not line.startswith("| `loss.gp_every`"))
    with pytest.raises(AssertionError, match="loss.gp_every: in the code"):
        compare(documented_defaults(without), declared_defaults(), "docs/training.md")
