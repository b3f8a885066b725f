"""Checkpoints: the self-describing model folder and the resumable training checkpoints.

Two kinds of files live in a run directory::

    runs/<name>/
      best/                       best validation top-1: a model folder in the Hugging Face Hub layout
        model.safetensors           the weights; its header holds the description below
        config.json                 the description: model config, class names, preprocessing, metrics
        README.md                   the model card
      last/                       the same, weights at the latest checkpoint
      checkpoints/step_00000123/  accelerator.save_state + train_state.json (last N)

The **model folder** (:func:`save_model_file` / :func:`load_model_file`, and `VideoTransformer`'s
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``, which use them) rebuilds the model without
the training config: the safetensors header carries the model config, class names, data config
(preprocessing), step, epoch and metrics; ``config.json`` is the same description as JSON and
``README.md`` a model card made from it, both written after the weights. The safetensors file is
authoritative, so replacing it is the single atomic step of a save. Folders written before the Hub
layout (``model.safetensors`` + ``model.json``, the same header) load the same way; a re-save in such
a folder removes the stale ``model.json``.

A **training checkpoint** (:class:`CheckpointDir`) is written into a hidden temporary folder next
to its final place and renamed once complete, so a kill during a save leaves the previous
checkpoints intact; a folder named ``step_*`` is always complete.

Every write goes to a temporary name in the same folder, is fsynced, then ``os.replace``-d.
Loading uses safetensors (no pickle); files that accelerate pickles are loaded by accelerate
with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model

from vivit_tl.errors import UserError
from vivit_tl.models import ModelConfig, VideoTransformer, build_model
from vivit_tl.models.card import card_fields

FORMAT = "vivit_tl.model"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"  # the description, as the Hub layout names it
CARD_NAME = "README.md"  # the model card
OLD_INFO_NAME = "model.json"  # the description in folders written before the Hub layout
META_KEY = "vivit_tl"  # safetensors header key holding the JSON description
HUB_PREFIX = "hf:"  # a Hub repo id (or a folder) as a model spec: hf:<user>/<name>
#: What huggingface_hub raises when it cannot provide a file (no such repo or file, offline, bad repo id).
HUB_ERRORS = (HfHubHTTPError, EntryNotFoundError, HFValidationError, OfflineModeIsEnabled)
STEP_DIR = re.compile(r"^step_(\d+)$")
TRAIN_STATE_NAME = "train_state.json"


# --------------------------------------------------------------------------- atomic file helpers
def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after a rename) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)``, fsync it, then atomically replace ``path`` with it.

    A crash at any point leaves either the old ``path`` or the new one, never a partial file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


# --------------------------------------------------------------------------- the model file
def save_model_file(
    directory: str | Path,
    model: VideoTransformer,
    *,
    classes: list[str],
    data_config: Any | None,
    step: int,
    epoch: int,
    metrics: dict[str, float] | None = None,
    model_name: str | None = None,
) -> Path:
    """Write the model folder ``directory``: ``model.safetensors``, then ``config.json`` and ``README.md``,
    each atomically.

    Args:
        directory: output folder (created).
        model: the (unwrapped) model; ``model.config`` must rebuild it.
        classes: class names, index = label.
        data_config: the ``vivit_tl.data.DataConfig`` (or its dict) used for preprocessing; None when unknown.
        step: the optimizer step at which the weights were taken.
        epoch: the epoch at which the weights were taken.
        metrics: e.g. ``{"val/top1": 0.93}``.
        model_name: the named variant the config came from (informational).

    Returns:
        The path of the weights file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    if len(classes) != config.num_classes:
        raise ValueError(f"{len(classes)} class names for a model with num_classes={config.num_classes}")
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "model_config": dataclasses.asdict(config),
        "classes": list(classes),
        "data_config": data_config if data_config is None or isinstance(data_config, dict)
        else dataclasses.asdict(data_config),
        "step": int(step),
        "epoch": int(epoch),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
    }
    text = json.dumps(info, indent=2)
    weights = directory / WEIGHTS_NAME
    # save_model drops duplicate names of shared tensors (recorded in the header) and copies to CPU
    atomic_write(weights, lambda tmp: save_model(model, str(tmp), metadata={META_KEY: text}))
    atomic_write_text(directory / CONFIG_NAME, text + "\n")
    card = model.generate_model_card(**card_fields(config, info, sum(p.numel() for p in model.parameters())))
    atomic_write_text(directory / CARD_NAME, str(card))
    (directory / OLD_INFO_NAME).unlink(missing_ok=True)  # an older layout's copy: it would describe older weights
    return weights


def load_model_file(path: str | Path) -> tuple[VideoTransformer, dict[str, Any]]:
    """Rebuild a model from a model folder; returns ``(model, info)``, the model in eval mode on CPU,
    with ``model.info = info``.

    Args:
        path: the model folder (Hub layout, or the older ``model.json`` one), its ``model.safetensors``,
            ``config.json`` or ``model.json``, a run directory (then ``best/``, else ``last/`` inside it),
            or ``hf:<repo id>`` (downloaded and cached by huggingface_hub).

    Returns:
        ``info`` has keys ``model_config``, ``classes``, ``data_config``, ``step``, ``epoch``,
        ``metrics`` (and ``model_name``, ``format_version``, ``path``).

    Raises:
        FileNotFoundError: no model file at ``path``.
        UserError: a corrupt/truncated file, a file of another format or model, weights that do not
            match the config (missing/unexpected keys, other shapes), or a repo the Hub cannot provide.
    """
    weights = resolve_model_file(path)
    info = read_model_info(weights)
    try:
        config = ModelConfig.from_dict(info["model_config"])
        model = build_model(config)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{weights}: model config cannot be rebuilt by this version: {exc}") from None
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}
            aliases = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{weights} is corrupt or truncated: {exc}") from None
    for name in model.state_dict().keys() - state.keys():  # shared tensors saved once by save_model
        if aliases.get(name) in state:
            state[name] = state[aliases[name]]
    load_state_dict_strict(model, state, source=str(weights), model_name=info.get("model_name"))
    model.eval()
    info["path"] = str(weights)
    model.info = info
    return model, info


def resolve_model_file(path: str | Path) -> Path:
    """Path of the ``model.safetensors`` that ``path`` designates (see :func:`load_model_file`); an
    ``hf:<repo id>`` is downloaded (or read from the cache) by huggingface_hub."""
    if str(path).startswith(HUB_PREFIX):
        target = str(path)[len(HUB_PREFIX):]
        if not Path(target).expanduser().exists():
            return hub_file(target, WEIGHTS_NAME)
        path = target
    path = Path(path).expanduser()
    if path.is_file():
        if path.name in (CONFIG_NAME, OLD_INFO_NAME):
            path = path.with_name(WEIGHTS_NAME)
        if path.is_file():
            return path
    elif path.is_dir():
        for candidate in (path / WEIGHTS_NAME, path / "best" / WEIGHTS_NAME, path / "last" / WEIGHTS_NAME):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no model file at {path} (expected a folder with {WEIGHTS_NAME} or a run directory)")


def read_model_info(weights: str | Path) -> dict[str, Any]:
    """The JSON description stored in a model file's safetensors header (no tensor is read)."""
    weights = Path(weights)
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        if weights.suffix != ".safetensors":
            raise UserError(f"{weights} is not a model file (expected a folder with {WEIGHTS_NAME}, e.g. runs/<name>/best;"
                            f" exported .pt2 programs load with torch.export.load): {exc}") from None
        raise UserError(f"{weights} is corrupt or truncated: {exc}") from None
    if META_KEY not in metadata:
        other = _foreign_model_type(weights.with_name(CONFIG_NAME))
        if other:
            hint = ("; to initialise a vivit-tl model from a transformers ViViT: model.init_from=hf:<repo id or folder>"
                    if other == "transformers 'vivit'" else "")
            raise UserError(f"{weights.parent} holds a {other} model, not a vivit-tl model{hint}")
        raise UserError(
            f"{weights} is not a vivit-tl model file (no '{META_KEY}' header); "
            "training checkpoints (checkpoints/step_*) resume with vivit-tl train --resume, "
            "the model file is in the run's best/ or last/ folder"
        )
    try:
        info = json.loads(metadata[META_KEY])
    except json.JSONDecodeError as exc:
        raise UserError(f"{weights}: corrupt model description: {exc}") from None
    if info.get("format") != FORMAT or int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise UserError(
            f"{weights}: unsupported model file format {info.get('format')!r} "
            f"version {info.get('format_version')!r} (this version reads {FORMAT} <= {FORMAT_VERSION})"
        )
    return info


def _foreign_model_type(config_file: Path) -> str | None:
    """``"transformers 'vivit'"`` when ``config_file`` is another library's ``config.json``, else None."""
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(config, dict) or config.get("format") == FORMAT:
        return None
    if "model_type" in config:
        return f"transformers {config['model_type']!r}"
    return "non-vivit-tl (config.json without format 'vivit_tl.model')"


def load_state_dict_strict(
    model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str, model_name: str | None = None
) -> None:
    """``model.load_state_dict(state)`` with a one-line error naming the mismatch and its source."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches, e.g. {k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        origin = f" (saved from {model_name})" if model_name else ""
        raise UserError(f"weights in {source}{origin} do not match the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- the Hub
def hub_file(repo_id: str, filename: str, **hub_kwargs: Any) -> Path:
    """``filename`` of the Hub repo ``repo_id``, downloaded or from huggingface_hub's cache (``HF_HOME``,
    ``HF_HUB_OFFLINE=1``: the cache only); ``hub_kwargs`` go to ``hf_hub_download`` (``revision``, ...)."""
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, **hub_kwargs))
    except HUB_ERRORS as exc:
        raise hub_error(repo_id, exc) from None


def hub_error(repo_id: str, exc: Exception) -> UserError:
    """A one-line `UserError` for a huggingface_hub failure to provide ``repo_id``."""
    reason = " ".join(str(exc).split())[:300]
    return UserError(f"{repo_id!r} is no local folder, and the Hugging Face Hub cannot provide it "
                     f"({type(exc).__name__}: {reason})")


def read_hub_config(target: str) -> dict[str, Any] | None:
    """The ``config.json`` of a local folder or a Hub repo id, or None when there is none to be had."""
    path = Path(target).expanduser()
    if path.exists():
        config_file = path / CONFIG_NAME if path.is_dir() else path.with_name(CONFIG_NAME)
    else:
        try:
            config_file = Path(hf_hub_download(repo_id=target, filename=CONFIG_NAME))
        except HUB_ERRORS:
            return None
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{config_file} is corrupt: {exc}") from None
    return config if isinstance(config, dict) else None


def report_dir(info: dict[str, Any], name: str) -> Path:
    """Default folder of a report on a loaded model (``info`` from :func:`load_model_file`): ``name`` inside
    the model's folder, or in the current folder for a model read from the Hub cache (never written into)."""
    folder = Path(info["path"]).parent
    return Path(name) if folder.is_relative_to(Path(hub_constants.HF_HUB_CACHE)) else folder / name


def is_model_description(config: dict[str, Any] | None) -> bool:
    """Whether a ``config.json`` (as a dict) describes a vivit-tl model."""
    return isinstance(config, dict) and config.get("format") == FORMAT


# --------------------------------------------------------------------------- training checkpoints
class CheckpointDir:
    """The ``checkpoints/`` folder of a run: atomic ``step_*`` folders, keep-last-N, latest lookup."""

    def __init__(self, root: str | Path, keep_last: int = 2) -> None:
        self.root = Path(root)
        self.keep_last = max(1, keep_last)

    def path(self, step: int) -> Path:
        """Final folder of the checkpoint at optimizer step ``step``."""
        return self.root / f"step_{step:08d}"

    def staging(self, step: int) -> Path:
        """Hidden folder a checkpoint is written into before :meth:`commit` renames it."""
        return self.root / f".step_{step:08d}.partial"

    def list(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        found = self.list()
        return found[-1] if found else None

    def commit(self, step: int, train_state: dict[str, Any]) -> Path:
        """Finish a checkpoint written into :meth:`staging`: add ``train_state.json``, fsync, rename.

        Call on the main process only, after every process has written its part.
        """
        staging, final = self.staging(step), self.path(step)
        atomic_write_text(staging / TRAIN_STATE_NAME, json.dumps(train_state, indent=2) + "\n")
        for item in staging.iterdir():
            if item.is_file():
                with open(item, "rb") as handle:
                    os.fsync(handle.fileno())
        fsync_dir(staging)
        if final.exists():  # the same step saved again (e.g. resumed at an epoch end): swap
            trash = self.replaced(step)
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            os.replace(staging, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, final)
        fsync_dir(self.root)
        self.prune()
        return final

    def prune(self) -> None:
        """Delete all but the newest ``keep_last`` checkpoints, and leftovers of interrupted saves."""
        for old in self.list()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        self.clean_partial()

    def replaced(self, step: int) -> Path:
        """Hidden folder the old checkpoint of ``step`` moves to while a new one of the same step replaces it."""
        return self.root / f".step_{step:08d}.old"

    def clean_partial(self) -> None:
        """Remove staging folders left by a save that was killed. A checkpoint moved aside for a re-save of
        its step whose replacement never arrived (killed between the two renames) is put back first."""
        if not self.root.is_dir():
            return
        for old in self.root.glob(".step_*.old"):
            final = self.root / old.name[1: -len(".old")]
            if not final.exists():
                os.replace(old, final)
        for leftover in self.root.glob(".step_*"):
            shutil.rmtree(leftover, ignore_errors=True)


def read_train_state(checkpoint: str | Path) -> dict[str, Any]:
    """The ``train_state.json`` of a training checkpoint, with a clear error if it is not one."""
    checkpoint = Path(checkpoint)
    state_file = checkpoint / TRAIN_STATE_NAME
    if not state_file.is_file():
        raise UserError(f"{checkpoint} is not a training checkpoint (no {TRAIN_STATE_NAME})")
    try:
        return json.loads(state_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{state_file} is corrupt: {exc}") from None


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``['depth: 12 (checkpoint) vs 4 (now)', ...]`` for two model config dicts."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} (checkpoint) vs {current.get(k)!r} (now)" for k in keys if saved.get(k) != current.get(k)]


def _few(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"

