"""Loading, overriding, validating and writing configs."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cryodyna.config.schema import TrainAtomConfig, TrainCGConfig, TrainDensityConfig
from cryodyna.errors import ConfigError

CONFIGS: dict[str, type[BaseModel]] = {"train-atom": TrainAtomConfig, "train-cg": TrainCGConfig, "train-density": TrainDensityConfig}


def _check_keys(model: type[BaseModel], data: dict, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for the first unknown key, suggesting the closest valid one."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {type(data).__name__}")
    for key, value in data.items():
        fields = model.model_fields
        if key not in fields:
            nested = {f"{name}.{leaf}": leaf for name, f in fields.items()
                      if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel) for leaf in f.annotation.model_fields}
            close = [full for full, leaf in nested.items() if leaf == key] or \
                difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(prefix + f for f in fields)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        annotation = fields[key].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
            _check_keys(annotation, value, f"{prefix}{key}.")


def _apply_override(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. loss.clash_weight=5")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: '{p}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def load_config(kind: str, path: str | Path | None = None, overrides: list[str] | None = None) -> BaseModel:
    """Defaults of config ``kind``, updated by the YAML file ``path`` and then ``overrides``
    (``"a.b=value"``, values parsed as YAML)."""
    return _validated(kind, _read_yaml(path), overrides)


def _read_yaml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None


def _validated(kind: str, data: dict[str, Any], overrides: list[str] | None) -> BaseModel:
    if kind not in CONFIGS:
        raise ConfigError(f"unknown config kind {kind!r}; available: {', '.join(CONFIGS)}")
    model = CONFIGS[kind]
    for assignment in overrides or []:
        _apply_override(data, assignment)
    _check_keys(model, data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"config value '{loc}': {err['msg']} (got {err.get('input')!r})") from None


def dump_yaml(config: BaseModel, comments: bool = True) -> str:
    """YAML text of ``config``; with ``comments`` each field is preceded by its description."""
    lines: list[str] = []

    def walk(model: BaseModel, indent: int) -> None:
        pad = " " * indent
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                lines.append(f"{pad}{name}:")
                walk(value, indent + 2)
                continue
            if comments and field.description:
                lines.append(f"{pad}# {field.description}")
            dumped = yaml.safe_dump({name: value}, default_flow_style=True, sort_keys=False).strip()
            lines.append(pad + dumped.removeprefix("{").removesuffix("}"))

    walk(config, 0)
    return "\n".join(lines) + "\n"


def resolved_config(config: Path | None, overrides: list[str], epochs: int | None, kind: str = "train-atom") -> BaseModel:
    """The config of command ``kind`` from a file and ``--set`` overrides (``--epochs`` is a shortcut)."""
    overrides = list(overrides) + ([f"optim.epochs={epochs}"] if epochs is not None else [])
    return load_config(kind, config, overrides)


# Settings added after runs were first recorded, with the value a run whose config.yaml lacks them
# was trained with (today's default may differ).
RECORD_DEFAULTS = {"model.displacement_scale": 1.0, "optim.posterior_candidates": 0}

# Settings removed since runs were first recorded: a run's config.yaml that has them still loads
# (they no longer change anything).
RETIRED_SETTINGS = ("optim.refine_steps", "optim.refine_lr", "optim.pose_lr_deg", "optim.pose_lr_a", "optim.pose_prior_weight")


def _lookup(data: dict, dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _in_schema(model: type[BaseModel], dotted: str) -> bool:
    for part in dotted.split("."):
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return False
        model = field.annotation
    return True


def load_run_config(kind: str, path: str | Path) -> BaseModel:
    """The configuration a run recorded in ``config.yaml``; a setting added since it was written takes
    the value the run was trained with (:data:`RECORD_DEFAULTS`), not today's default, and settings
    removed since (:data:`RETIRED_SETTINGS`) are dropped."""
    data = _read_yaml(path) if Path(path).is_file() else {}
    for key in RETIRED_SETTINGS:
        *sections, name = key.split(".")
        node: Any = data
        for part in sections:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(name, None)
    missing = [f"{key}={value}" for key, value in RECORD_DEFAULTS.items()
               if kind in CONFIGS and _in_schema(CONFIGS[kind], key) and not _lookup(data, key)]
    return _validated(kind, data, missing)
