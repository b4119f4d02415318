"""The speed paths of mmsam's SAM give the official numbers (fp32, same random weights).

Covers the chunked relative-position attention of the encoder (against mmpretrain's
reference attention), the folded token attentions and shared image-side work of the
mask decoder, the matrix-product upscaling and prompt chunking; the reference-shaped
path (``fast_path=False``) is checked against the official code as well.
"""

import pytest
import torch
from mmpretrain.models.backbones.vit_sam import Attention, TransformerEncoderLayer

from mmsam.models.heads import mask_decoder_fast_path as fast
from mmsam.models.layers import (
    TokenAttention,
    TwoWayTransformer,
    encoder_layer_forward,
    expand_rel_pos_bias,
    rel_pos_attend,
    rel_pos_terms,
)
from mmsam.testing import build_sam_pair

segment_anything = pytest.importorskip('segment_anything')
from segment_anything.modeling.image_encoder import add_decomposed_rel_pos  # noqa: E402

TOL = 1e-5


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope='module')
def pair():
    # a 256 input keeps the 16x16 image embedding small; the decoder is full size
    return build_sam_pair('tiny', img_size=256, window_size=4, seed=3)


@pytest.mark.parametrize('q_size,k_size', [((5, 7), (5, 7)), ((4, 4), (8, 8)), ((6, 3), (3, 6))])
def test_rel_pos_bias_matches_official(q_size, k_size):
    gen = torch.Generator().manual_seed(0)
    c = 8
    q = torch.randn(3, q_size[0] * q_size[1], c, generator=gen)
    rel_h = torch.randn(2 * max(q_size[0], k_size[0]) - 1, c, generator=gen)
    rel_w = torch.randn(2 * max(q_size[1], k_size[1]) - 1, c, generator=gen)
    zeros = torch.zeros(3, q.shape[1], k_size[0] * k_size[1])
    ref = add_decomposed_rel_pos(zeros, q, rel_h, rel_w, q_size, k_size)
    ours = expand_rel_pos_bias(*rel_pos_terms(q, rel_h, rel_w, q_size, k_size))
    assert ours.is_contiguous()
    assert _maxdiff(ours, ref) <= TOL


@pytest.mark.parametrize('max_bias_elements', [2**30, 3 * 4 * 36 * 36, 4 * 36 * 36 - 1, 100])
def test_rel_pos_attention_chunking_does_not_change_results(max_bias_elements):
    torch.manual_seed(0)
    ref = Attention(32, num_heads=4, use_rel_pos=True, input_size=(6, 6)).eval()
    with torch.no_grad():
        ref.rel_pos_h.normal_(0, 0.5)
        ref.rel_pos_w.normal_(0, 0.5)
    x = torch.randn(5, 6, 6, 32)
    with torch.no_grad():
        expected = ref(x)  # mmpretrain's (the official) attention
        got = ref.proj(rel_pos_attend(ref, x, max_bias_elements))
    assert _maxdiff(got, expected) <= TOL


@pytest.mark.parametrize('window_size', [0, 4])
def test_encoder_layer_speed_path_equals_mmpretrain_layer(window_size):
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(
        32, 4, 64, use_rel_pos=True, window_size=window_size, input_size=(6, 7)
    ).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        x = torch.randn(2, 6, 7, 32)
        assert _maxdiff(encoder_layer_forward(layer, x, max_bias_elements=50), layer(x)) <= TOL


def test_rel_pos_attention_rejects_bad_budget():
    attn = Attention(32, num_heads=4)
    with pytest.raises(ValueError, match='max_bias_elements'):
        rel_pos_attend(attn, torch.zeros(1, 2, 2, 32), max_bias_elements=0)


def _token_attention(seed: int = 0) -> TokenAttention:
    torch.manual_seed(seed)
    attn = TokenAttention(64, num_heads=4, downsample_rate=2).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return attn


@pytest.mark.parametrize('shared_queries', [False, True])
def test_folded_image_to_token_attention(shared_queries):
    attn = _token_attention()
    b, n_img, n_tok = 3, 50, 5
    image = torch.randn(1 if shared_queries else b, n_img, 64)
    tokens = torch.randn(b, n_tok, 64)
    values = torch.randn(b, n_tok, 64)
    residual = torch.randn(b, n_img, 64)
    with torch.no_grad():
        ref = attn(image.expand(b, -1, -1), tokens, values)
        assert _maxdiff(fast.attend_few_keys(attn, image, tokens, values), ref) <= TOL
        got = fast.attend_few_keys(attn, image, tokens, values, residual=residual)
    assert _maxdiff(got, residual + ref) <= TOL


@pytest.mark.parametrize('shared_keys', [False, True])
def test_folded_token_to_image_attention(shared_keys):
    attn = _token_attention(1)
    b, n_img, n_tok = 3, 50, 6
    tokens = torch.randn(b, n_tok, 64)
    keys = torch.randn(1 if shared_keys else b, n_img, 64)
    values = torch.randn(1 if shared_keys else b, n_img, 64)
    with torch.no_grad():
        ref = attn(tokens, keys.expand(b, -1, -1), values.expand(b, -1, -1))
        assert _maxdiff(fast.attend_tokens_to_image(attn, tokens, keys, values), ref) <= TOL
        assert _maxdiff(fast.attend_few_queries(attn, tokens, keys, values), ref) <= TOL


def test_token_attention_cache_reuses_only_the_shared_side():
    attn = _token_attention(2)
    image = torch.randn(1, 40, 64)
    cache = {}
    with torch.no_grad():
        for b in (3, 1, 2):  # includes a batch of one token set: tokens are not cached
            tokens = torch.randn(b, 5, 64)
            ref = attn(tokens, image.expand(b, -1, -1), image.expand(b, -1, -1))
            assert _maxdiff(fast.attend_shared_keys(attn, tokens, image, image, cache), ref) <= TOL
        assert set(cache) == {'k', 'v'}


def test_transformer_shared_image_and_chunks_match_repeated_image():
    torch.manual_seed(0)
    transformer = TwoWayTransformer(depth=2, embed_dims=64, num_heads=4, mlp_dims=128).eval()
    image = torch.randn(1, 64, 6, 5)
    pe = torch.randn(1, 64, 6, 5)
    tokens = torch.randn(5, 7, 64)
    with torch.no_grad():
        ref_q, ref_k = transformer(image.expand(5, -1, -1, -1), pe.expand(5, -1, -1, -1), tokens)
        q, k = fast.transformer_forward(transformer, image, pe, tokens)
        cache = {}
        parts = [
            fast.transformer_forward(transformer, image, pe, tokens[s : s + 2], cache)
            for s in range(0, 5, 2)
        ]
    assert _maxdiff(q, ref_q) <= TOL and _maxdiff(k, ref_k) <= TOL
    assert _maxdiff(torch.cat([p[0] for p in parts]), ref_q) <= TOL
    assert _maxdiff(torch.cat([p[1] for p in parts]), ref_k) <= TOL


def _prompts(n: int, size: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, 2, generator=gen) * size
    boxes = torch.cat([xy.min(1).values, xy.max(1).values], dim=1)
    coords = torch.rand(n, 3, 2, generator=gen) * size
    labels = torch.randint(0, 2, (n, 3), generator=gen)
    masks = torch.randn(n, 1, size // 4, size // 4, generator=gen) * 4
    return (coords, labels), boxes, masks


def _official_decode(official, emb, points, boxes, masks, multimask):
    sparse, dense = official.prompt_encoder(points=points, boxes=boxes, masks=masks)
    return official.mask_decoder(
        image_embeddings=emb,
        image_pe=official.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


@pytest.mark.parametrize('fast_path', [True, False])
@pytest.mark.parametrize(
    'kinds,n,chunk,multimask',
    [
        (('boxes',), 64, 4, True),
        (('boxes',), 7, 3, False),
        (('points',), 5, None, True),
        (('points', 'boxes'), 6, 1, True),
        (('points', 'masks'), 3, 2, True),
        (('points',), 1, 4, False),
    ],
)
def test_batched_decoder_matches_official(pair, kinds, n, chunk, multimask, fast_path):
    official, ours = pair
    torch.manual_seed(n)
    emb = torch.randn(1, 256, 16, 16)
    points, boxes, masks = _prompts(n, 256, seed=n)
    points = points if 'points' in kinds else None
    boxes = boxes if 'boxes' in kinds else None
    masks = masks if 'masks' in kinds else None
    ours.test_cfg['prompts_per_batch'] = chunk
    ours.set_speed_options(fast_path=fast_path)
    try:
        with torch.no_grad():
            ref_logits, ref_iou = _official_decode(official, emb, points, boxes, masks, multimask)
            logits, iou = ours.predict_prompts(emb, points, boxes, masks, multimask)
    finally:
        ours.test_cfg['prompts_per_batch'] = None
        ours.set_speed_options(fast_path=True)
    assert logits.shape == ref_logits.shape == (n, 3 if multimask else 1, 64, 64)
    assert ref_logits.std() > 0.1
    assert _maxdiff(logits, ref_logits) <= TOL
    assert _maxdiff(iou, ref_iou) <= TOL


def test_matmul_upscaling_equals_transposed_convolutions(pair):
    _, ours = pair
    decoder = ours.mask_decoder
    torch.manual_seed(0)
    src = torch.randn(3, 16 * 16, 256)
    hyper_in = torch.randn(3, 4, 32)
    with torch.no_grad():
        feats = src.transpose(1, 2).reshape(3, 256, 16, 16)
        upscaled = decoder.output_upscaling(feats)
        ref = (hyper_in @ upscaled.flatten(2)).view(3, 4, 64, 64)
        assert fast.can_upscale_as_matmul(decoder.output_upscaling)
        got = fast.upscale_as_matmul(decoder.output_upscaling, src, (16, 16), hyper_in)
        ref_shared = (hyper_in @ upscaled[:1].flatten(2)).view(3, 4, 64, 64)
        shared = fast.upscale_as_matmul(decoder.output_upscaling, src[:1], (16, 16), hyper_in)
    assert _maxdiff(got, ref) <= TOL
    assert _maxdiff(shared, ref_shared) <= TOL


def test_other_upscaling_runs_as_the_reference_on_the_speed_path():
    """A decoder whose upscaling is not SAM's (here GroupNorm for LayerNorm2d): the speed
    path upscales as the reference does; the matrix-product upscaling refuses it."""
    from mmsam.models.heads import SAMMaskDecoder

    torch.manual_seed(0)
    decoder = SAMMaskDecoder(transformer_dims=64, transformer=dict(mlp_dims=128, num_heads=4))
    decoder.output_upscaling[1] = torch.nn.GroupNorm(4, 16)
    assert not fast.can_upscale_as_matmul(decoder.output_upscaling)
    torch.manual_seed(1)
    image, pe = torch.randn(1, 64, 8, 8), torch.randn(1, 64, 8, 8)
    sparse, dense = torch.randn(3, 2, 64), torch.randn(1, 64, 8, 8)
    got = {}
    with torch.no_grad():
        for fast_path in (True, False):
            decoder.fast_path = fast_path
            got[fast_path] = decoder.predict_masks(image, pe, sparse, dense)
        with pytest.raises(ValueError, match="SAM's upscaling"):
            fast.upscale_as_matmul(
                decoder.output_upscaling, torch.randn(1, 64, 64), (8, 8), torch.randn(3, 4, 8)
            )
    assert got[True][0].shape == (3, 4, 32, 32) and got[True][0].std() > 0
    assert _maxdiff(got[True][0], got[False][0]) <= TOL
    assert _maxdiff(got[True][1], got[False][1]) <= TOL


def test_image_encoder_paths_match_official(pair):
    official, ours = pair
    torch.manual_seed(5)
    image = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        ref = official.image_encoder(image)
        got = {}
        for fast_path in (True, False):
            ours.set_speed_options(fast_path=fast_path)
            got[fast_path] = ours.extract_feat(image)[0]
        ours.set_speed_options(fast_path=True)
    assert ours.backbone.fast_path and ours.mask_decoder.fast_path
    assert ref.std() > 0.1
    assert _maxdiff(got[True], ref) <= TOL
    assert _maxdiff(got[False], ref) <= TOL
