"""Run ``tools/test.py`` end to end with a tiny SAM, as the tests do.

One place for what every end-to-end test of ``tools/test.py`` needs: a config file that
puts a reduced-size SAM into an evaluation config (keeping that config's test-time
prompt protocol), and a subprocess run that returns the exit code, the output and the
metrics JSON.
"""

import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.config import Config

from .parity import sam_model_cfg

#: The repository root (tools/ and configs/ live there).
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs', 'sam')


def write_tiny_eval_config(
    path: Union[str, os.PathLike],
    base: str,
    img_size: int,
    window_size: int,
    data_root: Optional[str] = None,
    dataset: Optional[dict] = None,
    num_clicks: Optional[int] = None,
    multimask: Union[None, str, bool] = None,
    arch: Union[str, dict] = 'tiny',
) -> str:
    """Write ``base`` (an evaluation config of ``configs/sam/``) with a tiny SAM.

    Args:
        path: the config file to write.
        base: the evaluation config's file name in ``configs/sam/`` (or a path).
        img_size: the tiny model's input side.
        window_size: its attention window side.
        data_root: the test dataset's ``data_root`` (ending with ``/``).
        dataset: other keys merged into ``test_dataloader.dataset``.
        num_clicks: make the model an ``InteractiveSAM`` with this many clicks.
        multimask: override ``test_cfg.multimask_output`` (default: the config's own).
        arch: the encoder settings (see :data:`mmsam.testing.parity.TEST_ARCHS`).

    Returns:
        str: ``path``.
    """
    base = base if osp.isabs(base) else osp.join(CONFIGS, base)
    model = sam_model_cfg(arch, img_size=img_size, window_size=window_size)
    model['data_preprocessor']['bgr_to_rgb'] = True  # LoadImageFromFile reads BGR
    if num_clicks is not None:
        model.update(type='InteractiveSAM', num_clicks=num_clicks)
    # the evaluation config's test-time protocol, or the key that overrides it
    model['test_cfg'] = dict(Config.fromfile(base).model.test_cfg)
    if multimask is not None:
        model['test_cfg']['multimask_output'] = multimask
    model['_delete_'] = True
    dataset = dict(dataset or {})
    if data_root is not None:
        dataset['data_root'] = data_root
    with open(path, 'w') as f:
        f.write(f'_base_ = [{base!r}]\n')
        f.write(f'model = {model!r}\n')
        f.write(
            'test_dataloader = dict(num_workers=0, persistent_workers=False, '
            f'dataset=dict(**{dataset!r}))\n'
        )
    return str(path)


def run_test_script(
    args: List[str],
    work_dir: str,
    env_extra: Optional[Dict[str, str]] = None,
    command: Optional[List[str]] = None,
) -> Tuple[int, str, Optional[dict]]:
    """Run ``tools/test.py ARGS --work-dir WORK_DIR`` in a subprocess, on one thread.

    One thread per process: on a busy 2-core machine, tiny models run up to 50 times
    slower with 2 spinning OpenMP threads than with one.

    Args:
        args: the command line after ``tools/test.py`` (config, checkpoint, options).
        work_dir: passed as ``--work-dir``; the metrics JSON is read from there.
        env_extra: more environment variables.
        command: what runs instead of ``[python, 'tools/test.py']`` (for example a
            ``python -c`` wrapper), given the same arguments.

    Returns:
        ``(exit code, stdout + stderr, metrics dict or None)``.
    """
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env['OMP_NUM_THREADS'] = '1'
    env.update(env_extra or {})
    cmd = [*(command or [sys.executable, 'tools/test.py']), *args, '--work-dir', work_dir]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    found = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    metrics = json.load(open(found[-1])) if found else None
    return proc.returncode, proc.stdout + proc.stderr, metrics


def input_size_overrides(img_size: int) -> dict:
    """``model`` config overrides that run a SAM config at ``img_size`` px (the image
    encoder, the data preprocessor and the prompt encoder's sizes), e.g. for
    ``mmsam.get_model(config, **input_size_overrides(256))``."""
    side = img_size // 16
    return dict(
        backbone=dict(img_size=img_size),
        data_preprocessor=dict(image_size=img_size),
        prompt_encoder=dict(image_embedding_size=(side, side), input_image_size=(img_size,) * 2),
    )


def run_box_prompt_eval(
    config: str,
    checkpoint: str,
    data_root: str,
    work_dir: str,
    img_size: int,
    extra_options: Sequence[str] = (),
) -> Tuple[int, str, Optional[dict]]:
    """:func:`run_test_script` with a COCO prompt config on the dataset at ``data_root``
    (e.g. :func:`mmsam.testing.coco_fixture.make_coco_fixture`'s), the model at
    ``img_size`` px, no dataloader workers, then ``extra_options`` (``key=value``)."""
    side = img_size // 16
    options = [
        f'test_dataloader.dataset.data_root={data_root}/',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        f'model.backbone.img_size={img_size}',
        f'model.data_preprocessor.image_size={img_size}',
        f'model.prompt_encoder.image_embedding_size=[{side},{side}]',
        f'model.prompt_encoder.input_image_size=[{img_size},{img_size}]',
        *extra_options,
    ]
    return run_test_script([config, checkpoint, '--cfg-options', *options], work_dir)


def assert_box_prompt_eval_runs(
    config: str, checkpoint: str, folder: str, img_size: int, extra_options: Sequence[str] = ()
) -> dict:
    """:func:`run_box_prompt_eval` on a fresh COCO fixture (``folder/coco``, seeded) with its
    work dir in ``folder/work``: the run exits 0 and reports an mIoU in ``[0, 1]`` over at
    least one instance, as JSON-able metrics (returned)."""
    from .coco_fixture import make_coco_fixture

    data = make_coco_fixture(osp.join(folder, 'coco'), seed=0, bad_entries=False)
    work = osp.join(folder, 'work')
    code, output, metrics = run_box_prompt_eval(
        config, checkpoint, data['data_root'], work, img_size, extra_options
    )
    assert code == 0, output[-3000:]
    assert metrics is not None and metrics['coco/num_instances'] > 0
    assert 0.0 <= metrics['coco/mIoU@1'] <= 1.0
    json.dumps(metrics)
    return metrics


def run_cli(args: List[str]) -> subprocess.CompletedProcess:
    """``python -m mmsam.cli ARGS`` in a subprocess of this checkout, on one thread."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'mmsam.cli', *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def assert_cli_segment_matches_predictor(
    name: str, model, image, folder: str, point: Tuple[float, float] = (100.0, 70.0)
) -> None:
    """``mmsam segment IMAGE --model NAME --weights <model's weights> --points X,Y`` writes
    the predictor's best mask for the point (a pixel or two may differ at the threshold).

    Args:
        name: a model name of ``model-index.yml``.
        model: the model ``name`` builds, with the weights to test (saved to ``folder``).
        image: ``(H, W, 3)`` uint8 RGB.
        folder: a scratch folder.
        point: the ``(x, y)`` click.
    """
    import numpy as np
    from PIL import Image

    from ..apis import SAMPredictor
    from ..utils.checkpoint_io import save_checkpoint

    weights = osp.join(folder, 'weights.pth')
    save_checkpoint(model.state_dict(), weights)
    image_path, out = osp.join(folder, 'image.png'), osp.join(folder, 'out')
    Image.fromarray(image).save(image_path)
    proc = run_cli(
        ['segment', image_path, '--model', name, '--weights', weights]
        + ['--points', f'{point[0]:g},{point[1]:g}', '--out-dir', out, '--device', 'cpu']
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    pngs = sorted(glob.glob(osp.join(out, '**', '*.png'), recursive=True))
    assert pngs, sorted(glob.glob(osp.join(out, '**'), recursive=True))
    predictor = SAMPredictor(model.eval())
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(point_coords=np.array([point]), point_labels=[1])
    expected = masks[int(np.argmax(scores))]
    written = [np.asarray(Image.open(p)) > 0 for p in pngs]
    assert any(w.shape == expected.shape and (w != expected).sum() <= 2 for w in written)
