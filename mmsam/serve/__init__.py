"""``mmsam serve``: an interactive segmentation page for a folder of images.

The server (:mod:`.app`, Starlette run by uvicorn) lists the folder's images
(:mod:`.folder`), computes each image's embedding once into an embedding store and
exports the decoder to ONNX once per model (:mod:`.engine`); the page
(``static/``) runs that decoder in the browser with onnxruntime-web on every click,
or asks the server to decode when it cannot. Accepted masks are saved per image and
exported as COCO or SA-1B JSON (:mod:`.storage`). The command is :mod:`mmsam.cli.serve`.
"""

from .app import create_app, ort_missing
from .engine import ServeModel
from .folder import BadRequest, ImageFolder, Limits, NotFound
from .storage import AnnotationStore, StaleRevision

__all__ = [
    'AnnotationStore',
    'BadRequest',
    'ImageFolder',
    'Limits',
    'NotFound',
    'ServeModel',
    'StaleRevision',
    'create_app',
    'ort_missing',
]
