# Runtime of mmsam's evaluation configs (as mmdet's default_runtime, test only).
# default_scope ('mmdet') and custom_imports come with the model configs
# (configs/_base_/models/sam_vit-*.py); mmengine refuses a key twice among bases.
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # mmengine's LoggerHook, the test metrics JSON written by one process (mmsam.engine)
    logger=dict(type='MainProcessLoggerHook', interval=50),
    # tools/test.py --show-dir turns drawing on
    visualization=dict(type='DetVisualizationHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/test.py falls back to 'gloo' when CUDA is not available
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

# mmsam's runner loads load_from strictly, from any SAM layout (mmsam/engine/runner.py)
runner_type = 'SAMRunner'

log_level = 'INFO'
load_from = None
resume = False
