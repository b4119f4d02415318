"""mmsam's models; importing this registers them in mmpretrain's and mmdet's registries."""

from .backbones import *  # noqa: F401,F403
from .backbones import __all__ as _backbones
from .data_preprocessors import *  # noqa: F401,F403
from .data_preprocessors import __all__ as _preprocessors
from .detectors import *  # noqa: F401,F403
from .detectors import __all__ as _detectors
from .heads import *  # noqa: F401,F403
from .heads import __all__ as _heads
from .losses import *  # noqa: F401,F403
from .losses import __all__ as _losses
from .peft import *  # noqa: F401,F403
from .peft import __all__ as _peft

__all__ = [*_backbones, *_preprocessors, *_detectors, *_heads, *_losses, *_peft]
