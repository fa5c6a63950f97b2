"""Every command the READMEs document composes and passes the schema.

The commands are collected from README.md and experiments/*/README.md (every line that runs a
``python -m diffusion_lit.<entry point>``, with its continuation lines), rewritten so that they
can compose offline (placeholders such as ``<run>`` or ``...`` become paths, a sweep takes the
first value of each swept key) and composed through Hydra exactly as the command line would be,
then checked by the run's schema (unknown keys, wrong types and options, for every group the
command selects). A documented override that Hydra refuses (the README's old ``logger=null``) or
a key that no longer exists fails here. Running them is left to the smoke runs of test_cli.py:
most need data, a checkpoint or an hour.
"""

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from diffusion_lit.runs.config_schema import (
    EditConfig,
    EvaluateConfig,
    ReflowConfig,
    SampleConfig,
    TrainConfig,
    check_config_types,
)
from diffusion_lit.utils.overrides import null_groups_removed, options_of_checkpoint_group
from diffusion_lit.utils.paths import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "experiments").glob("*/README.md"))]
HYDRA_ENTRY_POINTS = {"train": TrainConfig, "sample": SampleConfig, "evaluate": EvaluateConfig, "edit": EditConfig,
                      "reflow": ReflowConfig, "train_features": None}  # fmt: skip
COMMAND = re.compile(r"python -m diffusion_lit\.(\w+)(.*)")


def documented_commands() -> list[tuple[str, str, str]]:
    """(where, entry point, arguments) of every documented command line."""
    commands = []
    for document in DOCUMENTS:
        lines = document.read_text().splitlines()
        for number, line in enumerate(lines):
            match = COMMAND.search(line)
            if not match:
                continue
            text = line[match.start() :]
            follow = number
            while text.rstrip().endswith("\\") and follow + 1 < len(lines):  # continuation lines
                follow += 1
                text = text.rstrip()[:-1] + " " + lines[follow].strip()
            text = re.split(r"\s+#|`|\|", text)[0]  # a trailing comment, the end of inline code or a table cell
            entry, arguments = COMMAND.match(text).groups()
            commands.append((f"{document.relative_to(ROOT)}:{number + 1}", entry, arguments.strip()))
    return commands


def offline_overrides(arguments: str, placeholder: Path) -> list[str]:
    """The command's overrides as the command line passes them to Hydra, made composable offline."""
    arguments = re.sub(r"<[^>]*>", str(placeholder), arguments)  # <run>, <cat images>, <earlier snapshot>
    overrides = []
    for token in shlex.split(arguments):
        if token.startswith("[") and token.endswith("]") and "=" in token:  # an optional argument: [num_images=256]
            token = token[1:-1]
        if token in ("-m", "--multirun") or token.startswith("--"):  # sweeps compose job by job; --help, --cfg
            continue
        if token == "job" or "=" not in token:
            continue
        key, _, value = token.partition("=")
        if value in ("...", "X"):
            value = str(placeholder)
        elif "," in value and not value.startswith(("[", "{")):  # a sweep: its first job
            value = value.split(",")[0]
        group = Path(CONFIG_DIR) / key
        if value == str(placeholder) and group.is_dir():  # task=<task>: each option is tested elsewhere; take one
            value = min(path.stem for path in group.glob("*.yaml"))
        overrides.append(f"{key}={value}")
    return overrides


COMMANDS = documented_commands()


def test_the_readmes_document_commands_of_every_entry_point():
    entries = {entry for _, entry, _ in COMMANDS}
    assert {"train", "sample", "evaluate", "edit", "reflow", "train_features", "plot_schedules", "report"} <= entries
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize("where, entry, arguments", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_a_documented_command_composes_and_passes_the_schema(tmp_path, where, entry, arguments):
    if entry not in HYDRA_ENTRY_POINTS:  # report and plot_schedules take plain arguments (test_toolkit_cli)
        pytest.skip(f"{entry} is not a Hydra command")
    argv = null_groups_removed(["cmd", *offline_overrides(arguments, tmp_path / "placeholder")], CONFIG_DIR)
    if entry in ("evaluate", "edit"):
        argv = options_of_checkpoint_group(argv, "sampler")
    overrides = [override for override in argv[1:] if not override.startswith(("hydra.", "hydra/"))]
    if entry in ("sample", "evaluate", "edit", "reflow") and not any(item.startswith("ckpt=") for item in overrides):
        overrides.append(f"ckpt={tmp_path / 'last.ckpt'}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=entry, overrides=overrides)
    schema = HYDRA_ENTRY_POINTS[entry]
    if schema is not None:
        check_config_types(cfg, schema)
