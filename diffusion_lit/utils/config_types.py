"""Check a config node against a schema: a dataclass, or the signature of the callable its
``_target_`` names (the parameters are the keys, their annotations the types).

The node is merged into a structured OmegaConf config built from the schema, so OmegaConf itself
rejects a value of the wrong type and names the key; ``Literal`` options (OmegaConf has no
Literal type) are checked by value, and unknown keys get the list of known ones with the closest
match. Used by the run configs' schema (:mod:`diffusion_lit.runs.config_schema`) and wherever a
config node from the command line meets a stored one (a checkpoint's sampler).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import importlib
import inspect
import types
import typing
from dataclasses import field
from typing import Any, Literal, Union, get_args, get_origin

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from diffusion_lit.utils.errors import UserError

# Keys of an instantiated node that Hydra reads itself.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
# Keyword arguments the code passes when it calls a partial (a sampler's generator, progress
# callback and edit hooks): accepted in a config, not listed as its options.
CALL_TIME_KEYS = frozenset({"generator", "callback", "edit"})
_SCALARS = (int, float, bool, str)


def locate(dotted: str) -> Any:
    """The object a ``_target_`` names (``package.module.name`` or ``package.module.Class.method``)."""
    parts = str(dotted).split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise ImportError(dotted)


def _plain(annotation: Any) -> tuple[Any, tuple | None]:
    """(the OmegaConf type of ``annotation``, its Literal choices or None).

    OmegaConf types: the scalars, Optional of one, lists of scalars; anything else (unions of
    several types, tensors, callables) is ``Any``, left to the target's own checks.
    """
    origin = get_origin(annotation)
    if annotation in _SCALARS:
        return annotation, None
    if origin is Literal:
        choices = get_args(annotation)
        kinds = {type(choice) for choice in choices}
        return (kinds.pop() if len(kinds) == 1 else Any), choices
    if origin in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            inner, choices = _plain(members[0])
            return (inner | None if inner is not Any else Any), choices
        return Any, None
    if origin in (list, tuple, collections.abc.Sequence):
        members = get_args(annotation)
        uniform = origin is not tuple or members[-1] is Ellipsis or len(set(members)) == 1
        if members and members[0] in _SCALARS and uniform:
            return list[members[0]], None
        return Any, None
    return Any, None


def _type_hints(target: Any) -> dict[str, Any]:
    """The resolved annotations of a callable's parameters ({} where they cannot be resolved)."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:  # forward references a library never resolves (e.g. TYPE_CHECKING-only names)
        return {}


def _describe(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if get_origin(annotation) is None else None
    return text or str(annotation).replace("typing.", "")


def _unknown_key(path: str, key: str, known: list[str], owner: str) -> UserError:
    prefix = f"{path}." if path else ""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {prefix}{close[0]}?" if close else ""
    return UserError(
        f"{prefix}{key} is not an option of {owner}.{hint} Its options: {', '.join(sorted(known))}. "
        "Remove the key or correct its name."
    )


def _items(node: DictConfig | dict) -> list[tuple[str, Any]]:
    """A node's (key, value) pairs with interpolations resolved; a value that cannot be resolved here
    (``${hydra:...}`` outside a Hydra run) is left out: its target still checks it at run time."""
    pairs = []
    for key in node:
        try:
            value = node[key]
        except OmegaConfBaseException:
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            try:
                value = OmegaConf.to_container(value, resolve=True)
            except OmegaConfBaseException:
                continue
        pairs.append((str(key), value))
    return pairs


def _check_against(values: dict[str, Any], schema: type, path: str, owner: str, choices: dict[str, tuple]) -> None:
    """Merge ``values`` into the structured config of dataclass ``schema``: OmegaConf rejects a
    value of the wrong type (the error names the key); then the Literal ``choices`` are checked."""
    prefix = f"{path}." if path else ""
    try:
        OmegaConf.merge(OmegaConf.structured(schema), values)
    except OmegaConfBaseException as error:
        name = str(error.full_key or "").split(".")[0].split("[")[0]
        expected = {item.name: item.type for item in dataclasses.fields(schema)}.get(name)
        wanted = f"; expected {_describe(expected)} ({owner})" if expected is not None else ""
        reason = str(error).splitlines()[0].rstrip(".")
        raise UserError(
            f"{prefix}{name}={values.get(name)!r} is not valid: {reason}{wanted}. "
            f"Set {prefix}{name} to a value of that type."
        ) from None
    for key, allowed in choices.items():
        if values.get(key) is not None and values[key] not in allowed:
            raise UserError(f"{prefix}{key} must be one of {list(allowed)}, got {values[key]!r}.")


def check_instantiated(node: DictConfig, path: str) -> None:
    """Check a ``_target_`` node (and the ``_target_`` nodes inside it) against its target's signature."""
    target_name = node.get("_target_")
    try:
        target = locate(target_name)
    except Exception:
        raise UserError(
            f"{path}._target_={target_name!r} cannot be imported: check its spelling, or choose one of the "
            f"config group's options ({path.split('.')[0]}=<option>)."
        ) from None
    owner = getattr(target, "__qualname__", str(target_name))
    parameters = inspect.signature(target).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    named = {
        name: parameter for name, parameter in parameters.items()
        if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }  # fmt: skip
    hints = _type_hints(target)
    values, fields, choices = {}, [], {}
    for key in node:
        key = str(key)
        if key in HYDRA_KEYS:
            continue
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)):
            walk_instantiated(child, f"{path}.{key}")
        if key not in named:
            if takes_any:
                continue
            options = [name for name, parameter in named.items() if parameter.default is not inspect.Parameter.empty]
            raise _unknown_key(path, key, [name for name in options if name not in CALL_TIME_KEYS], owner)
    for key, value in _items(node):
        if key in HYDRA_KEYS or key not in named or (isinstance(value, dict) and "_target_" in value):
            continue
        kind, allowed = _plain(hints.get(key, Any))
        if named[key].default is None and kind is not Any:
            kind = kind | None
        if kind is Any:
            continue
        values[key] = value
        fields.append((key, kind, field(default=MISSING)))
        if allowed:
            choices[key] = allowed
    if fields:
        _check_against(values, dataclasses.make_dataclass(f"{owner}Options", fields), path, owner, choices)


def check_section(node: DictConfig, schema: type, path: str) -> None:
    """A section described by a dataclass: unknown keys (with a suggestion), nested sections, and
    the types of its own values (OmegaConf); ``Any`` fields are instantiated groups, checked by
    :func:`check_instantiated`."""
    hints = typing.get_type_hints(schema)
    prefix = f"{path}." if path else ""
    owner = f"the {path} section" if path else "this command's config"
    values, choices = {}, {}
    for key in node:
        key = str(key)
        if key == "hydra":
            continue
        if key not in hints:
            raise _unknown_key(path, key, list(hints), owner)
    for key, value in _items(node):
        if key == "hydra":
            continue
        kind = hints[key]
        nested = next((member for member in (get_args(kind) or (kind,)) if dataclasses.is_dataclass(member)), None)
        if nested is not None:
            if value is not None:
                check_section(node[key], nested, f"{prefix}{key}")
            continue
        if kind is Any:
            continue
        values[key] = value
        _, allowed = _plain(kind)
        if allowed:
            choices[key] = allowed
    fields = [(key, _plain(hints[key])[0], field(default=MISSING)) for key in values]
    plain = dataclasses.make_dataclass(f"{schema.__name__}Values", fields)
    _check_against(values, plain, path, owner, choices)


def walk_instantiated(node: Any, path: str) -> None:
    """Check every ``_target_`` node in ``node`` (a config or a part of one at ``path``)."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            check_instantiated(node, path or "config")
            return
        for key in node:
            if key != "hydra":
                walk_instantiated(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for index in range(len(node)):
            walk_instantiated(node._get_node(index), f"{path}[{index}]")
