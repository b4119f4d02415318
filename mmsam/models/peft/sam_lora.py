"""LoRA on SAM's image encoder, through mmpretrain's ``LoRAModel``."""

from collections import OrderedDict

import torch
from mmpretrain.models.peft import LoRAModel
from mmpretrain.models.peft.lora import LoRALinear
from mmpretrain.registry import MODELS


@MODELS.register_module()
class SAMLoRAEncoder(LoRAModel):
    """mmpretrain's ``LoRAModel`` around :class:`SAMImageEncoder`.

    Differences from ``LoRAModel``, so that it can stand in for the encoder inside
    :class:`mmsam.models.SAM`:

    * the encoder's attributes that SAM reads (``img_size``) are exposed;
    * checkpoints hold every weight (``LoRAModel`` saves only the LoRA factors), so a
      fine-tuned checkpoint loads alone with its config;
    * :meth:`merged_state_dict` folds the factors into the weights: the plain encoder
      layout, for export to mmsam's or the official layout.

    Args: see ``mmpretrain.models.LoRAModel`` (``module``, ``alpha``, ``rank``,
    ``drop_rate``, ``targets``).
    """

    def _register_state_dict_hooks(self) -> None:
        """Keep the full state dict (no LoRA-only saving hook)."""

    @property
    def img_size(self) -> int:
        """Input side of the wrapped encoder."""
        return self.module.img_size

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """The wrapped encoder's depth, with ``module.`` added to the prefix."""
        return self.module.get_layer_depth(param_name, prefix + 'module.')

    @torch.no_grad()
    def merged_state_dict(self) -> 'OrderedDict[str, torch.Tensor]':
        """The wrapped encoder's state dict with ``W + (alpha / rank) * up @ down``
        as the weight of every LoRA layer (names of the plain encoder)."""
        merged = OrderedDict()
        lora = {name: m for name, m in self.module.named_modules() if isinstance(m, LoRALinear)}
        for key, value in self.module.state_dict().items():
            owner = next((n for n in lora if key.startswith(n + '.')), None)
            if owner is None:
                merged[key] = value.clone()
                continue
            rest = key[len(owner) + 1 :]
            if rest.startswith('lora_'):
                continue
            layer = lora[owner]
            name = rest[len('original_layer.') :]
            if name == 'weight':
                delta = layer.lora_up.weight @ layer.lora_down.weight
                value = value + layer.scaling * delta.to(value.dtype)
            merged[f'{owner}.{name}'] = value.clone()
        return merged
