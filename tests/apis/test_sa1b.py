"""SA-1B writer and reader: round trips from every generator output mode."""

import json
import os

import numpy as np
import pytest
import torch

from mmsam.apis.sa1b import decode_sa1b_masks, read_sa1b, records_to_sa1b, write_sa1b
from mmsam.structures import (
    batched_mask_to_box,
    box_xyxy_to_xywh,
    mask_to_rle,
    masks_to_coco_rle,
    rle_area,
)

H, W = 37, 52


def _masks(n=4, seed=0) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand((n, 1, 6, 8), generator=gen)
    masks = torch.nn.functional.interpolate(noise, (H, W), mode='bilinear')[:, 0] > 0.55
    masks[0, 0, 0] = True
    return masks.numpy()


def _records(masks: np.ndarray, mode: str):
    rles = mask_to_rle(torch.from_numpy(masks))
    segs = {
        'binary_mask': list(masks),
        'uncompressed_rle': rles,
        'coco_rle': masks_to_coco_rle(masks),
    }[mode]
    boxes = box_xyxy_to_xywh(batched_mask_to_box(torch.from_numpy(masks))).tolist()
    return [
        {
            'segmentation': segs[i],
            'area': rle_area(rles[i]),
            'bbox': boxes[i],
            'predicted_iou': 0.9 - 0.1 * i,
            'point_coords': [[3.5 + i, 7.25]],
            'stability_score': np.float32(0.95),
            'crop_box': [0, 0, W, H],
        }
        for i in range(len(masks))
    ]


@pytest.mark.parametrize('mode', ['binary_mask', 'uncompressed_rle', 'coco_rle'])
def test_round_trip(tmp_path, mode):
    masks = _masks()
    records = _records(masks, mode)
    path = str(tmp_path / 'sa_1.json')
    written = write_sa1b(path, records, image_id=1, file_name='sa_1.jpg', first_annotation_id=10)
    with open(path) as f:
        raw = json.load(f)
    assert raw == written
    assert raw['image'] == {'image_id': 1, 'width': W, 'height': H, 'file_name': 'sa_1.jpg'}
    anns = raw['annotations']
    assert [a['id'] for a in anns] == [10, 11, 12, 13]
    assert all(isinstance(a['segmentation']['counts'], str) for a in anns)
    assert anns[0]['segmentation']['size'] == [H, W]
    assert anns[1]['bbox'] == records[1]['bbox'] and anns[1]['area'] == records[1]['area']
    assert anns[2]['point_coords'] == [[5.5, 7.25]]
    assert anns[0]['stability_score'] == pytest.approx(0.95)
    assert set(anns[0]) == {
        'id',
        'segmentation',
        'bbox',
        'area',
        'predicted_iou',
        'stability_score',
        'crop_box',
        'point_coords',
    }
    data = read_sa1b(path)
    assert data == raw
    decoded = decode_sa1b_masks(path)
    np.testing.assert_array_equal(decoded, masks)
    np.testing.assert_array_equal(decode_sa1b_masks(data), masks)
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]


def test_empty_records_write_a_valid_file(tmp_path):
    path = str(tmp_path / 'empty.json')
    write_sa1b(path, [], image_id=7, file_name='empty.jpg', height=H, width=W)
    data = read_sa1b(path)
    assert data == {
        'image': {'image_id': 7, 'width': W, 'height': H, 'file_name': 'empty.jpg'},
        'annotations': [],
    }
    assert decode_sa1b_masks(path).shape == (0, H, W)
    with pytest.raises(ValueError, match='height and width'):
        records_to_sa1b([], image_id=7, file_name='empty.jpg')


def test_bad_records_leave_no_file(tmp_path):
    path = str(tmp_path / 'bad.json')
    records = _records(_masks(), 'binary_mask')
    with pytest.raises(ValueError, match='expected \\[10, 10\\]'):
        write_sa1b(path, records, 1, 'x.jpg', height=10, width=10)
    with pytest.raises(ValueError, match=r"records\[0\] lacks \['area'\]"):
        write_sa1b(path, [{k: v for k, v in records[0].items() if k != 'area'}], 1, 'x.jpg')
    with pytest.raises(ValueError, match='segmentation'):
        write_sa1b(path, [dict(records[0], segmentation=[1, 2])], 1, 'x.jpg')
    assert not os.listdir(tmp_path)


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.json'):
        read_sa1b(str(tmp_path / 'missing.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"image": ')
    with pytest.raises(ValueError, match='not valid JSON'):
        read_sa1b(str(bad))
    bad.write_text('{"images": []}')
    with pytest.raises(ValueError, match='not an SA-1B file'):
        read_sa1b(str(bad))
    bad.write_text(
        json.dumps(
            {
                'image': {'image_id': 1, 'width': 4, 'height': 3, 'file_name': 'a.jpg'},
                'annotations': [{'id': 0, 'segmentation': {'size': [5, 5], 'counts': 'PP'}}],
            }
        )
    )
    with pytest.raises(ValueError, match=r'annotations\[0\] mask size'):
        read_sa1b(str(bad))
