"""Reading pretrained weights: a spec (``timm:<name>``, ``hf:<repo id or folder>``, a local file or folder) as
a `Source`, i.e. the source's own state dict and what is known of its architecture. The conversions are in
`vivit_tl.pretrained.convert`, the loading into a model in `vivit_tl.pretrained.load`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vivit_tl.checkpoint import (
    HUB_PREFIX,
    META_KEY,
    OLD_INFO_NAME,
    WEIGHTS_NAME,
    is_model_description,
    load_model_file,
    read_hub_config,
    resolve_model_file,
)
from vivit_tl.errors import UserError
from vivit_tl.pretrained.convert import Grid, StateDict

#: transformers activation names -> our `gelu_approximate`.
HF_GELU = {"gelu": "none", "gelu_python": "none", "gelu_fast": "tanh", "gelu_new": "tanh",
           "gelu_pytorch_tanh": "tanh", "gelu_python_tanh": "tanh"}
#: Weight files a local path may name.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass
class Source:
    """Pretrained weights as read from a spec.

    Attributes:
        kind: 'timm', 'hf' or 'vivit_tl'.
        name: the spec (for messages).
        state: the source's own state dict.
        config: the `ModelConfig` fields the source determines (architecture, GELU form, eps, sizes);
            may be partial for a bare weights file.
        grid: the token grid ``(T, H, W)`` its positional table is laid out on, when known.
        model_config: a vivit-tl source's full config.
        classes: class names of the source's head, when known.
        preprocessing: ``{"mean": ..., "std": ...}`` the source was trained with, when known.
        notes: what had to be assumed while reading.
    """

    kind: str
    name: str
    state: StateDict
    config: dict[str, Any] = field(default_factory=dict)
    grid: Grid | None = None
    model_config: dict[str, Any] | None = None
    classes: list[str] | None = None
    preprocessing: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def read_source(spec: str) -> Source:
    """Read the weights (and what is known of their architecture) that ``spec`` designates."""
    if not isinstance(spec, str) or not spec:
        raise UserError(f"init_from must be 'timm:<name>', 'hf:<repo id>' or a path, got {spec!r}")
    if spec.startswith("timm:"):
        return _read_timm(spec)
    if spec.startswith("hf:"):
        return _read_hf(spec)
    return _read_path(spec)


def timm_source(net: nn.Module, name: str) -> Source:
    """A `Source` from a built timm ``VisionTransformer`` (its weights and architecture)."""
    if type(net).__name__ != "VisionTransformer" or not hasattr(net, "patch_embed"):
        raise UserError(f"{name}: only timm VisionTransformer models are supported, got {type(net).__name__}")
    block = net.blocks[0]
    act = block.mlp.act
    gelu = getattr(act, "approximate", None) or ("tanh" if "tanh" in type(act).__name__.lower() else None)
    if gelu is None:
        raise UserError(f"{name}: MLP activation {type(act).__name__} is not GELU; only GELU ViTs are supported")
    norm = net.norm if isinstance(net.norm, nn.LayerNorm) else net.fc_norm
    img = net.patch_embed.img_size
    config = dict(embed_dim=net.embed_dim, depth=len(net.blocks), num_heads=block.attn.num_heads,
                  mlp_dim=block.mlp.fc1.out_features, patch_size=net.patch_embed.patch_size[0],
                  image_size=img[0], in_chans=net.patch_embed.proj.in_channels,
                  qkv_bias=block.attn.qkv.bias is not None,
                  norm_eps=getattr(norm, "eps", 1e-6), gelu_approximate=gelu, mlp_final_gelu=False,
                  pool="cls" if net.global_pool == "token" else "gap", num_frames=1, tubelet_size=1)
    if net.num_classes:
        config["num_classes"] = net.num_classes
    if img[0] != img[1]:
        raise UserError(f"{name}: non-square input size {tuple(img)} is not supported")
    pcfg = getattr(net, "pretrained_cfg", None) or {}
    grid = net.patch_embed.grid_size
    return Source("timm", name, net.state_dict(), config, grid=(1, grid[0], grid[1]),
                  preprocessing={k: list(pcfg[k]) for k in ("mean", "std") if k in pcfg} or None)


def hf_source(state: StateDict, hf_config: dict[str, Any], name: str) -> Source:
    """A `Source` from a transformers ViViT state dict and its config (``config.json`` as a dict)."""
    if hf_config.get("model_type") != "vivit":
        raise UserError(f"{name}: model_type {hf_config.get('model_type')!r} is not a transformers ViViT ('vivit')")
    t, p, pw = hf_config.get("tubelet_size", (2, 16, 16))
    size = hf_config.get("image_size", 224)
    h, w = (size, size) if isinstance(size, int) else size
    act = hf_config.get("hidden_act", "gelu_fast")
    if p != pw or h != w or act not in HF_GELU:
        raise UserError(f"{name}: unsupported ViViT config (tubelet {[t, p, pw]}, image_size {size}, "
                        f"hidden_act {act!r}); supported: square tubelets and frames, GELU ({sorted(HF_GELU)})")
    frames = hf_config.get("num_frames", 32)
    config = dict(embed_dim=hf_config.get("hidden_size", 768), depth=hf_config.get("num_hidden_layers", 12),
                  num_heads=hf_config.get("num_attention_heads", 12), mlp_dim=hf_config.get("intermediate_size", 3072),
                  patch_size=p, tubelet_size=t, num_frames=frames, image_size=h,
                  in_chans=hf_config.get("num_channels", 3),
                  qkv_bias=hf_config.get("qkv_bias", True), norm_eps=hf_config.get("layer_norm_eps", 1e-6),
                  gelu_approximate=HF_GELU[act], mlp_final_gelu=False, pool="cls", model_type="joint")
    classes = None
    head = state.get("classifier.weight")
    if head is not None:
        config["num_classes"] = head.shape[0]
        labels = {int(k): v for k, v in (hf_config.get("id2label") or {}).items()}
        if sorted(labels) == list(range(head.shape[0])):
            classes = [labels[i] for i in range(head.shape[0])]
    # The released Kinetics checkpoints were trained on zero-centred frames in [-1, 1] (scenic zero_centering).
    return Source("hf", name, state, config, grid=(frames // t, h // p, w // p), classes=classes,
                  preprocessing={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})


def _read_timm(spec: str) -> Source:
    timm = _optional("timm", spec)
    name = spec[len("timm:"):]
    try:
        net = timm.create_model(name, pretrained=True)
    except (RuntimeError, OSError, ValueError) as exc:  # unknown model name, or a download/hub error
        raise UserError(f"{spec}: timm cannot create it: {exc}") from None
    return timm_source(net, spec)


def _read_hf(spec: str) -> Source:
    """``hf:<repo id or folder>``: a vivit-tl model (its config.json says so, or a folder of the older layout,
    without config.json), else a transformers ViViT."""
    repo = spec[len(HUB_PREFIX):]
    config = read_hub_config(repo)
    if is_model_description(config) or (config is None and Path(repo).expanduser().exists()):
        return _model_file_source(spec, resolve_model_file(spec))
    if config is not None and "model_type" not in config:
        raise UserError(f"{spec}: its config.json describes neither a vivit-tl model (format 'vivit_tl.model') "
                        "nor a transformers one (model_type)")
    transformers = _optional("transformers", spec)
    try:
        model_type = transformers.AutoConfig.from_pretrained(repo).model_type
        if model_type == "vivit":
            net, info = transformers.VivitForVideoClassification.from_pretrained(repo, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:  # no such repo/folder, offline, not a transformers model
        raise UserError(f"{spec}: transformers cannot load it: {exc}") from None
    if model_type != "vivit":
        raise UserError(f"{spec}: model_type {model_type!r} is not a transformers ViViT ('vivit')")
    fresh = set(info.get("missing_keys", ()))  # newly initialised by transformers (e.g. no classifier in the repo)
    state = {k: v for k, v in net.state_dict().items() if k not in fresh}
    return hf_source(state, net.config.to_dict(), spec)


def _read_path(spec: str) -> Source:
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"init_from {spec!r}: no such file or folder (expected 'timm:<model name>', "
                                "'hf:<repo id>', or a weights file / model folder)")
    weights = path
    if path.is_dir():
        hf_files = [path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / "config.json").is_file()]
        weights = next((f for f in hf_files if f.is_file()), None) or resolve_model_file(path)  # else ours
    if weights.name == OLD_INFO_NAME:
        weights = weights.with_name(WEIGHTS_NAME)
    if weights.suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"init_from {spec!r}: unknown weights file type {weights.suffix!r} (expected one of "
                        f"{list(WEIGHT_SUFFIXES)})")
    if weights.suffix == ".safetensors" and META_KEY in _safetensors_metadata(weights):
        return _model_file_source(spec, weights)
    state = _read_state_dict(weights)
    if "patch_embed.proj.weight" in state:
        return Source("timm", spec, state, notes=[
            "a bare timm weights file: num_heads, the GELU form and LayerNorm eps cannot be read from it "
            "(timm ViTs use exact GELU, gelu_approximate='none', and eps 1e-6)"])
    if any(k.endswith("patch_embeddings.projection.weight") for k in state):
        config_file = weights.with_name("config.json")
        if config_file.is_file():
            return hf_source(state, json.loads(config_file.read_text()), spec)
        return Source("hf", spec, state, notes=["no config.json next to the transformers weights: the source "
                                                "grid is inferred, num_heads/GELU/eps are not checked"])
    if any(k.startswith("tokenizer.") for k in state):
        return Source("vivit_tl", spec, state, notes=["a bare vivit-tl state dict: assumed to come from a model "
                                                      "of this config"])
    raise UserError(f"{weights}: not a timm ViT, transformers ViViT or vivit-tl state dict "
                    f"(first keys: {list(state)[:4]})")


def _model_file_source(spec: str, weights: Path) -> Source:
    """A `Source` from a vivit-tl model file (a folder of either layout, local or from the Hub)."""
    model, info = load_model_file(weights)
    return Source("vivit_tl", spec, model.state_dict(), dict(info["model_config"]), model_config=info["model_config"],
                  classes=info.get("classes"), preprocessing=_data_normalisation(info.get("data_config")))


def _read_state_dict(path: Path) -> StateDict:
    """Tensors of a .safetensors or torch pickle (weights only), unwrapped from ``{'model': ...}``-style
    containers and a DDP ``module.`` prefix."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise UserError(f"{path}: cannot read weights: {exc}") from None
    while isinstance(state, dict) and len(state) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in ("model", "state_dict", "module", "model_state") if k in state), None)
        if not isinstance(inner, dict):
            break
        state = inner
    if not isinstance(state, dict) or not state:
        raise UserError(f"{path}: holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return state


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path} is corrupt or truncated: {exc}") from None


def _data_normalisation(data_config: dict | None) -> dict[str, Any] | None:
    if not data_config or data_config.get("mean") is None:
        return None
    return {"mean": data_config["mean"], "std": data_config["std"]}


def _optional(package: str, spec: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(f"{spec} needs the optional package {package!r}: pip install 'vivit-tl[pretrained]' "
                        f"(or pip install {package})") from None

