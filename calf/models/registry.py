"""The suite's networks under one name, networks named by import path, and their description.

Torch and MONAI are imported only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from calf._imports import constructor_parameters, import_object
from calf._lazy import import_monai

if TYPE_CHECKING:
    from torch import nn

# name -> (module, class): the authors' three networks (README.md, "Models and training")
MODELS: dict[str, tuple[str, str]] = {
    "unet": ("calf.models.unet", "UNet"),
    "deeplabv3": ("calf.models.deeplabv3", "DeepLabV3"),
    "fpn": ("calf.models.fpn", "FPN"),
}


def _from_import_path(path: str, in_channels: int, out_channels: int, kwargs: dict) -> nn.Module:
    from torch import nn

    cls = import_object(path, "model")
    if not callable(cls):
        raise ValueError(f"model {path!r} is not a class or factory")
    names, var_kw = constructor_parameters(cls)
    kwargs = dict(kwargs)
    if "spatial_dims" in names and "spatial_dims" not in kwargs:
        kwargs["spatial_dims"] = 2
    for key, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if key in names or var_kw:
            kwargs[key] = value
        elif value != 1:
            raise ValueError(
                f"model {path!r} takes no {key!r} argument; pass its own name for it in kwargs"
            )
    model = cls(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {path!r} did not build a torch.nn.Module")
    return model


def build_model(
    name: str, in_channels: int = 1, out_channels: int = 1, width: float = 1.0, **kwargs
) -> nn.Module:
    """Build a network by registered name (``MODELS``) or by import path.

    ``build_model("fpn", width=0.25)`` builds the suite's FPN with a quarter of the channels.
    ``build_model("monai.networks.nets.BasicUNet", features=(16, 16, 32, 64, 128, 16))``
    builds any other network: ``in_channels`` and ``out_channels`` are passed under those
    names when its constructor takes them (MONAI's convention; a constructor without them
    gets them only when they are not 1, and then it is an error: name its own arguments
    in ``kwargs``), ``spatial_dims=2`` is added when it takes ``spatial_dims``, and
    ``kwargs`` go through unchanged. ``width`` applies to the registered networks only.
    Every error (unknown name, bad argument) is a ``ValueError``.
    """
    try:
        if name in MODELS:
            module_name, class_name = MODELS[name]
            import_monai()  # the networks are built from MONAI blocks
            cls = import_object(f"{module_name}.{class_name}", "model")
            return cls(in_channels=in_channels, out_channels=out_channels, width=width, **kwargs)
        if "." in name:
            if width != 1.0:
                raise ValueError(f"width applies to {', '.join(MODELS)} only, not to {name!r}")
            return _from_import_path(name, in_channels, out_channels, kwargs)
    except TypeError as err:
        raise ValueError(f"model {name!r}: {err}") from None
    known = ", ".join(sorted(MODELS))
    raise ValueError(f"unknown model {name!r}; known models: {known}; or give an import path")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values of ``model`` (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe(
    name: str,
    width: float = 1.0,
    size: int = 256,
    in_channels: int = 1,
    out_channels: int = 1,
    **kwargs,
) -> str:
    """A few lines on a network: parameters, output shape for one slice, forward FLOPs.

    Builds the model (``build_model`` arguments), runs one ``(1, in_channels, size, size)``
    zero slice through it in eval mode and counts the forward pass's floating-point
    operations with ``torch.utils.flop_counter``. Raises ``ValueError`` when the output is
    not ``(1, out_channels, size, size)``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(name, in_channels, out_channels, width, **kwargs).eval()
    x = torch.zeros(1, in_channels, size, size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        y = model(x)
    expected = (1, out_channels, size, size)
    if tuple(y.shape) != expected:
        raise ValueError(
            f"model {name!r} gives output {tuple(y.shape)} for input {tuple(x.shape)}; "
            f"expected {expected}"
        )
    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    return "\n".join(
        [
            f"model: {name} (width {width:g}, {type(model).__module__}.{type(model).__name__})",
            f"parameters: {total:,} ({total / 1e6:.2f} M; trainable {trainable:,})",
            f"input {tuple(x.shape)} -> output {tuple(y.shape)}: ok",
            f"forward: {counter.get_total_flops() / 1e9:.2f} GFLOPs per {size} x {size} slice",
        ]
    )
