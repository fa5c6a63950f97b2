"""Command-line overrides that Hydra would refuse but whose meaning is clear.

``<group>=null`` (e.g. ``logger=null``, as many Hydra projects document it) is Hydra's
``~<group>``: no config of the group. Hydra itself stops with "Config group override must be a
string or a list. Got NoneType" and a traceback.

A config group that a checkpoint fills in:

``evaluate`` and ``edit`` take their sampler from the checkpoint unless ``sampler=<name>`` is
given, so their config has no ``sampler`` node and Hydra refuses ``sampler.steps=20`` ("Key
'sampler' is not in struct"; it wants ``+sampler.steps=20``). A user means "the checkpoint's
sampler with 20 steps", so without ``sampler=<name>`` such overrides get the ``+`` here and the
code merges them into the checkpoint's sampler config (:func:`diffusion_lit.lit.build.sampler_config`).
"""

from __future__ import annotations

from pathlib import Path


def options_of_checkpoint_group(argv: list[str], group: str) -> list[str]:
    """``argv`` with each ``<group>.<key>=<value>`` turned into ``+<group>.<key>=<value>`` when no
    ``<group>=<option>`` selects a config of the group (then the keys exist and need no ``+``)."""
    selected = any(arg.split("=", 1)[0].lstrip("+~") == group for arg in argv[1:])
    if selected:
        return list(argv)
    return [argv[0]] + [f"+{arg}" if arg.startswith(f"{group}.") and "=" in arg else arg for arg in argv[1:]]


def null_groups_removed(argv: list[str], config_dir: str) -> list[str]:
    """``argv`` with each ``<group>=null`` (``<group>`` a folder of ``config_dir``) as ``~<group>``."""

    def rewrite(arg: str) -> str:
        key, _, value = arg.partition("=")
        if value == "null" and not key.startswith(("+", "~")) and (Path(config_dir) / key).is_dir():
            return f"~{key}"
        return arg

    return [argv[0]] + [rewrite(arg) for arg in argv[1:]]
