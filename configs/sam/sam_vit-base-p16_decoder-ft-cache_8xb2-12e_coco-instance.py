# Decoder-only fine-tuning with the image embeddings cached on disk: each training
# image (and its flip) is encoded once, stored in float16 under a name made of the
# input's and the encoder weights' SHA-256, and read back in later epochs, so the
# decoder trains at the speed of the decoder (2 MB per entry at 1024 px).
_base_ = ['./sam_vit-base-p16_decoder-ft_8xb2-12e_coco-instance.py']

model = dict(
    train_cfg=dict(embedding_cache=dict(cache_dir='data/sam_embedding_cache', dtype='float16'))
)
