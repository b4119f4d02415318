"""The command line's defaults are the API's: read from the signatures, not copied."""

import inspect

import pytest

from mmsam.cli.parser import AMG_DEFAULTS, AMG_OPTIONS, ANNOTATE_DEFAULTS, build_parser


def _signature_defaults(func):
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_defaults_read_from_the_source_equal_the_signatures():
    from mmsam.apis.mask_generator import AutomaticMaskGenerator
    from mmsam.cli.annotate import auto_annotate

    for read, func in (
        (AMG_DEFAULTS, AutomaticMaskGenerator.__init__),
        (ANNOTATE_DEFAULTS, auto_annotate),
    ):
        expected = _signature_defaults(func)
        assert read, func
        assert read == {name: expected[name] for name in read}
    # every amg option has its default there
    assert {name.replace('-', '_') for name, _ in AMG_OPTIONS} <= set(AMG_DEFAULTS)


def test_parser_defaults_are_the_api_defaults():
    from mmsam.apis.mask_generator import AutomaticMaskGenerator
    from mmsam.cli.annotate import auto_annotate

    parser = build_parser()
    amg = vars(parser.parse_args(['amg', 'x']))
    generator = _signature_defaults(AutomaticMaskGenerator.__init__)
    for name, _ in AMG_OPTIONS:
        key = name.replace('-', '_')
        assert amg[key] == generator[key], key
    ann = vars(parser.parse_args(['annotate', 'x', '--det-model', 'd.py']))
    annotate = _signature_defaults(auto_annotate)
    assert (ann['conf'], ann['max_det']) == (annotate['conf'], annotate['max_det'])


def test_serve_and_embed_options_are_the_apis():
    """``serve``'s ``--amg-*`` defaults are the generator's; the store types are the store's."""
    from mmsam.apis.embedding_store import DTYPES
    from mmsam.apis.mask_generator import AutomaticMaskGenerator
    from mmsam.cli.parser import SERVE_AMG_OPTIONS, STORE_DTYPES

    assert STORE_DTYPES == DTYPES
    parser = build_parser()
    serve = vars(parser.parse_args(['serve']))
    generator = _signature_defaults(AutomaticMaskGenerator.__init__)
    assert SERVE_AMG_OPTIONS
    for name in SERVE_AMG_OPTIONS:
        key = name.replace('-', '_')
        assert serve[f'amg_{key}'] == generator[key], key
    assert serve['embedding_dtype'] == 'float16'
    for dtype in DTYPES:
        args = parser.parse_args(['embed', 'x', '--out', 'y', '--dtype', dtype])
        assert args.dtype == dtype
    with pytest.raises(SystemExit):
        parser.parse_args(['serve', '--embedding-dtype', 'bfloat16'])
