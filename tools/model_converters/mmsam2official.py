"""Export an mmsam SAM checkpoint (e.g. a fine-tuned one) to the official layout.

    python tools/model_converters/mmsam2official.py work_dirs/ft/best.pth sam_ft_official.pth
    # LoRA checkpoints: give the config, the LoRA factors are folded into the weights
    python tools/model_converters/mmsam2official.py best.pth out.pth --config CONFIG

The output is a bare state dict with the keys of Meta's ``segment_anything``
(``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), which
``sam_model_registry[...](checkpoint=out.pth)`` and the official ONNX export load.
Every key must be converted; the file is written whole or not at all. Exit code 0 on
success, 1 with one ``error:`` line otherwise.
"""

import argparse
import sys
from typing import List, Optional


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an mmsam SAM checkpoint to the official segment-anything layout'
    )
    parser.add_argument('src', help='mmsam checkpoint (what tools/train.py writes)')
    parser.add_argument('dst', help='official-layout state dict to write (.pth)')
    parser.add_argument(
        '--config',
        help='the training config; needed for LoRA checkpoints (folds the LoRA factors)',
    )
    return parser.parse_args(argv)


def _merged_lora_state(config: str, src: str):
    """Build the model of ``config``, load ``src`` and return the plain mmsam state dict."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmsam  # noqa: F401  (registers the modules)
    from mmsam.utils.checkpoint_io import load_checkpoint_file

    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    state, _ = load_checkpoint_file(src)
    model.load_state_dict(state, strict=True)
    merged = getattr(model.backbone, 'merged_state_dict', None)
    if merged is None:
        return model.state_dict()
    out = {f'backbone.{k}': v for k, v in merged().items()}
    out.update({k: v for k, v in model.state_dict().items() if not k.startswith('backbone.')})
    return out


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmsam.utils.checkpoint_io import atomic_torch_save, load_checkpoint_file
    from mmsam.utils.checkpoint_keys import KeyMapError, convert_mmsam_to_official

    try:
        if args.config is not None:
            state = _merged_lora_state(args.config, args.src)
        else:
            state, _ = load_checkpoint_file(args.src)
            if any('.lora_' in k or '.original_layer.' in k for k in state):
                raise ValueError(
                    f'{args.src} is a LoRA checkpoint: give its training config with '
                    '--config so that the LoRA factors are folded into the weights'
                )
        official = convert_mmsam_to_official(state)
        atomic_torch_save({k: v.detach().cpu().contiguous() for k, v in official.items()}, args.dst)
    except (OSError, ValueError, KeyError, TypeError, KeyMapError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'{args.dst}: {len(official)} tensors in the official segment-anything layout')
    return 0


if __name__ == '__main__':
    sys.exit(main())
