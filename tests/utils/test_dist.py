"""``setup_cpu_dist_cfg``: a launched job on a machine without CUDA uses gloo and CPU DDP."""

from unittest import mock

from mmengine.config import Config

from mmsam.utils.dist import setup_cpu_dist_cfg


def _on_cpu(cfg: Config) -> Config:
    with mock.patch('torch.cuda.is_available', return_value=False):
        return setup_cpu_dist_cfg(cfg)


def test_config_without_env_cfg_gets_gloo():
    # Config.setdefault hands back a converted copy of a plain dict: the backend once
    # never reached a config that had no env_cfg
    cfg = _on_cpu(Config(dict(launcher='pytorch')))
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'


def test_existing_settings_are_kept():
    cfg = Config(
        dict(
            launcher='slurm',
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl', timeout=60)),
            model_wrapper_cfg=dict(find_unused_parameters=True),
        )
    )
    cfg = _on_cpu(cfg)
    assert cfg.env_cfg.dist_cfg == dict(backend='gloo', timeout=60)
    assert cfg.env_cfg.cudnn_benchmark is False
    assert cfg.model_wrapper_cfg.find_unused_parameters is True


def test_no_launcher_or_cuda_changes_nothing():
    cfg = _on_cpu(Config(dict(launcher='none')))
    assert 'env_cfg' not in cfg and 'model_wrapper_cfg' not in cfg
    with mock.patch('torch.cuda.is_available', return_value=True):
        cfg = setup_cpu_dist_cfg(Config(dict(launcher='pytorch')))
    assert 'env_cfg' not in cfg
