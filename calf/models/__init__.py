"""The authors' three networks (U-Net, DeepLabV3, FPN; README.md, "Models and
training") and a registry.

``build_model(name, in_channels=1, out_channels=1, width=1.0, **kwargs)`` builds ``unet``,
``deeplabv3`` or ``fpn`` (one logit map of the input's size, H and W divisible by 32, from
scratch) or any network named by import path; ``count_parameters(model)`` and
``describe(name, width, size)`` report on them. Importing this package imports no torch
or MONAI; building a model does.
"""

from calf.models.registry import MODELS, build_model, count_parameters, describe

__all__ = ["MODELS", "build_model", "count_parameters", "describe"]
