"""Typed training configuration: four sections loaded from YAML, with ``key.sub=value`` overrides.

A config file has up to four top-level sections; every key left out keeps its default::

    model:              # a named variant of vivit_tl.models + overrides of any ModelConfig field
      name: vivit_ti16x2
      depth: 4
    data:               # vivit_tl.data.DataConfig
      kind: synthetic
    optim:              # OptimConfig
      lr: 1.0e-3
    run:                # RunConfig
      name: demo

Command-line overrides use dotted keys and YAML values: ``optim.lr=3e-4 run.name=try2
model.depth=6 data.root=/data/k400``. An unknown or misspelt key is an error that names it,
suggests the closest valid key and lists the valid ones. ``num_classes``, ``num_frames`` and
``image_size`` of the model are taken from the data (class count, ``data.num_frames``,
``data.image_size``); setting them in the model section to a different value is an error.

Why plain dataclasses and :func:`coerce` rather than OmegaConf structured configs or pydantic: the
config types are the dataclasses that the rest of the package already passes around and writes into
model files (``ModelConfig``, ``DataConfig``), and their type hints say all that the conversion needs.
Both libraries would convert the values too (checked with OmegaConf 2.4 and pydantic 2.14), but:

- command-line values arrive as YAML, so ``run.name=2`` is an int: pydantic (lax mode) refuses it
  for a ``str`` field, and both turn ``data.val_size: 10000`` into ``10000.0``, which the saved
  ``config.yaml`` then shows;
- every error must be one line that names the dotted key and suggests the closest valid key.
  pydantic's errors are multi-line reports, and some of OmegaConf's carry unfilled placeholders
  (``Value '$VALUE' of type '$VALUE_TYPE' could not be converted to Float`` for a bad tuple item),
  so each would be caught and rewritten;
- neither is a dependency of the package otherwise.

So either would replace the ~70 lines of :func:`coerce` with about as much adaptation code plus a
dependency. Range and consistency checks live in each dataclass's ``__post_init__``, as they would
with either library.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import yaml

from vivit_tl.data import DataConfig
from vivit_tl.errors import UserError, did_you_mean
from vivit_tl.models import ModelConfig, list_models

#: Model fields that the trainer derives from the data; the model section may only repeat them.
DATA_DERIVED_MODEL_FIELDS = ("num_classes", "num_frames", "image_size")

#: The packaged configs (``vivit_tl/configs/*.yaml``; ``configs/`` in a checkout links there).
CONFIG_DIR = Path(str(importlib.resources.files("vivit_tl") / "configs"))
DEFAULT_CONFIG = CONFIG_DIR / "demo.yaml"


def packaged_configs() -> dict[str, Path]:
    """Name -> file of every packaged config (``demo``, ``kinetics400_vivit_b16x2_tl``, ...)."""
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.yaml"))}


@dataclass
class ModelSection:
    """A named model variant plus overrides of :class:`vivit_tl.models.ModelConfig` fields.

    In YAML the overrides sit next to ``name`` (``{name: vivit_ti16x2, depth: 4}``).
    """

    name: str = "vivit_ti16x2"
    overrides: dict[str, Any] = field(default_factory=dict)
    #: pretrained weights loaded before training: ``timm:<name>``, ``hf:<repo id>`` or a local file/folder
    #: (see :func:`vivit_tl.pretrained.load_pretrained`); None trains from scratch.
    init_from: Optional[str] = None


@dataclass
class OptimConfig:
    """Optimisation: optimiser, schedule, regularisation, batch.

    ``lr`` is the peak learning rate for the whole effective batch
    (``batch_size × processes × grad_accum_steps``); it is not rescaled automatically.
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05  # AdamW: decoupled, times lr; SGD: L2 added to the gradient
    decay_all_params: bool = False  # False: norms, biases, positional tables, CLS token are not decayed
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    eps: float = 1e-8  # AdamW (Keras' default is 1e-7)
    momentum: float = 0.9  # SGD
    nesterov: bool = False  # SGD
    epochs: int = 10
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to min_lr
    min_lr: float = 0.0
    label_smoothing: float = 0.0  # also with mixup/CutMix: applied to the mixed targets
    mixup_alpha: float = 0.0  # > 0: v2.MixUp of the batch with lambda ~ Beta(alpha, alpha)
    cutmix_alpha: float = 0.0  # > 0: v2.CutMix of the batch; with mixup too, one of the two per batch (p = 0.5)
    ema_decay: Optional[float] = None  # an EMA of the weights (e.g. 0.9999), validated and saved as best_ema/, last_ema/
    layer_decay: Optional[float] = None  # layer-wise lr decay (e.g. 0.75): layer i of L gets lr * decay^(L + 1 - i)
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping
    grad_accum_steps: int = 1
    batch_size: int = 32  # per process
    eval_batch_size: Optional[int] = None  # per process; None = batch_size

    def __post_init__(self) -> None:
        _require_positive(self, "optim", ("epochs", "grad_accum_steps", "batch_size", "eval_batch_size"))
        for name in ("lr", "weight_decay", "eps", "momentum", "warmup_epochs", "min_lr", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"optim.{name}={getattr(self, name)!r} must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"optim.label_smoothing={self.label_smoothing!r} must be in [0, 1)")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"optim.{name}={getattr(self, name)!r} must be >= 0 (0: off)")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"optim.ema_decay={self.ema_decay!r} must be in (0, 1) or null (off)")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"optim.layer_decay={self.layer_decay!r} must be in (0, 1] or null (off)")


@dataclass
class RunConfig:
    """Where the run lives and how it is driven."""

    name: str = "demo"  # run directory = output_dir/name
    output_dir: str = "runs"
    seed: int = 0
    mixed_precision: Optional[Literal["no", "fp16", "bf16"]] = None  # None: the launcher's setting
    compile: bool = False  # torch.compile the model (inductor)
    cpu_threads: Optional[int] = None  # torch threads per process without accelerator; None: physical cores / local processes
    log_every_steps: int = 10
    eval_every_epochs: int = 1
    save_every_steps: int = 0  # extra mid-epoch checkpoints; a checkpoint is always saved per epoch
    keep_last: int = 2  # resumable checkpoints kept (the best model file is kept separately)
    test_split: Optional[str] = None  # evaluated with the best-val weights at the end; None: val

    def __post_init__(self) -> None:
        _require_positive(self, "run", ("cpu_threads", "log_every_steps", "eval_every_epochs", "keep_last"))
        if self.save_every_steps < 0:
            raise ValueError(f"run.save_every_steps={self.save_every_steps!r} must be >= 0 (0: once per epoch)")


def _require_positive(section: Any, name: str, fields: Sequence[str]) -> None:
    """ValueError naming the first of ``fields`` (ints; None allowed where the type is Optional) that is < 1."""
    for key in fields:
        value = getattr(section, key)
        if value is not None and value < 1:
            raise ValueError(f"{name}.{key}={value!r} must be >= 1")


@dataclass
class TrainConfig:
    """The whole training configuration."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (the YAML layout, model overrides flattened next to ``name``)."""
        return {
            "model": {"name": self.model.name, "init_from": self.model.init_from, **self.model.overrides},
            "data": _plain(dataclasses.asdict(self.data)),
            "optim": _plain(dataclasses.asdict(self.optim)),
            "run": _plain(dataclasses.asdict(self.run)),
        }

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML (loadable with :func:`load_config`)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


SECTIONS: dict[str, type] = {"data": DataConfig, "optim": OptimConfig, "run": RunConfig}


def resolve_config_path(path: str | Path | None) -> Path:
    """``None`` -> the demo config; a packaged config's name (``cifar10_vit_tl``) -> its file; else a path."""
    if path is None:
        return DEFAULT_CONFIG
    candidate = Path(path)
    packaged = packaged_configs()
    if not candidate.exists() and str(path) in packaged:
        candidate = packaged[str(path)]
    if not candidate.is_file():
        raise UserError(f"config file not found: {path} (packaged configs: {', '.join(packaged)}; "
                        "vivit-tl configs lists them)")
    return candidate


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a YAML config (default: ``configs/demo.yaml``) and apply ``key.sub=value`` overrides.

    Raises:
        UserError: unknown section/key, a value of the wrong type, a malformed override or an
            unreadable file, with a one-line message naming the offending key or value.
    """
    config_path = resolve_config_path(path)
    try:
        raw = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{config_path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{config_path}: expected a mapping of sections, got {type(raw).__name__}")
    tree: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        _check_key(str(section), ["model", *SECTIONS], "config section")
        if not isinstance(values, dict):
            raise UserError(f"{config_path}: section '{section}' must be a mapping, got {values!r}")
        tree[section] = dict(values)
    for item in overrides:
        key, value = parse_override(item)
        section, sub = key
        tree.setdefault(section, {})[sub] = value
    return build_config(tree)


def parse_override(item: str) -> tuple[tuple[str, str], Any]:
    """``'optim.lr=3e-4'`` -> ``(('optim', 'lr'), 3e-4)``; the value is parsed as YAML."""
    if "=" not in item:
        raise UserError(f"override '{item}' must look like section.key=value (e.g. optim.lr=3e-4)")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise UserError(f"override key '{key}' must be section.key (e.g. optim.lr, model.depth)")
    _check_key(parts[0], ["model", *SECTIONS], "config section")
    return (parts[0], parts[1]), yaml_value(text)


def yaml_value(text: str) -> Any:
    """A command-line value read as YAML (``3``, ``true``, ``[1, 2]``, ``null``); else the text."""
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text


def build_config(tree: dict[str, dict[str, Any]]) -> TrainConfig:
    """Validate a section -> {key: value} tree and build the typed :class:`TrainConfig`."""
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        sections[name] = _build_dataclass(cls, tree.get(name, {}), name)
    model_values = dict(tree.get("model", {}))
    model_name = model_values.pop("name", ModelSection.name)
    if not isinstance(model_name, str):
        raise UserError(f"config key model.name: expected a model name, got {model_name!r}")
    init_from = model_values.pop("init_from", None)
    if init_from is not None and not isinstance(init_from, str):
        raise UserError(f"config key model.init_from: expected 'timm:<name>', 'hf:<repo>' or a path, got {init_from!r}")
    _check_key(model_name, list_models(), "model name")
    hints = typing.get_type_hints(ModelConfig)
    valid = [f.name for f in dataclasses.fields(ModelConfig)]
    model_overrides = {}
    for key, value in model_values.items():
        _check_key(key, ["name", "init_from", *valid], "config key", prefix="model.")
        model_overrides[key] = coerce(value, hints[key], f"model.{key}")
    return TrainConfig(model=ModelSection(model_name, model_overrides, init_from), **sections)


def override_dataclass(obj: Any, items: Sequence[str], section: str) -> Any:
    """A copy of config dataclass ``obj`` (e.g. a DataConfig) with ``key=value`` items applied.

    Keys may carry the section prefix (``data.eval_clips=4``) or not (``eval_clips=4``).
    """
    values = dataclasses.asdict(obj)
    for item in items:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key=value (e.g. {section}.num_workers=0)")
        key, text = item.split("=", 1)
        key = key.strip().removeprefix(f"{section}.")
        values[key] = yaml_value(text)
    return _build_dataclass(type(obj), values, section)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type ``hint`` or raise a UserError naming ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:  # a value that already has one of the types keeps it (1.0 stays a float)
            if isinstance(arg, type) and type(value) is arg:
                return value
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if len(errors) == 1 else f"config key {key}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise UserError(f"config key {key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"config key {key}: expected {len(args)} values, got {value!r}")
            return tuple(coerce(v, a, key) for v, a in zip(value, args))
        item_hint = args[0] if args else Any
        return origin(coerce(v, item_hint, key) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key {key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UserError(f"config key {key}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UserError(f"config key {key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value  # an int is a valid float (and keeps meaning, e.g. data.val_size: 10000)
        if isinstance(value, str):  # YAML 1.1 reads '3e-4' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"config key {key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"config key {key}: expected a string, got {value!r}")
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise UserError(f"config key {key}: cannot use {value!r} as {hint}")


def _build_dataclass(cls: type, values: dict[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in values.items():
        _check_key(str(key), valid, "config key", prefix=f"{section}.")
        kwargs[key] = coerce(value, hints[key], f"{section}.{key}")
    try:  # DataConfig.from_dict applies its presets; the others are plain dataclasses
        return cls.from_dict(kwargs) if hasattr(cls, "from_dict") else cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"config section {section}: {exc}") from None


def _check_key(key: str, valid: Sequence[str], what: str, prefix: str = "") -> None:
    """Raise ``unknown config key 'optim.lrr' (did you mean 'optim.lr'?); valid keys in optim: ...``."""
    if key in valid:
        return
    where = f" in {prefix.rstrip('.')}" if prefix else ""
    raise UserError(f"unknown {what} '{prefix}{key}'{did_you_mean(key, valid, prefix)}; valid {what}s{where}: "
                    f"{', '.join(valid)}")


def _plain(value: Any) -> Any:
    """Tuples -> lists so that ``yaml.safe_dump`` writes plain YAML."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
