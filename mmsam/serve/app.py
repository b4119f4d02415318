"""The ASGI application of ``mmsam serve``: the page, the images, embeddings, decoding, saving.

Why Starlette (with uvicorn to run it): it is the small, well-kept ASGI toolkit that
FastAPI is built on (a BSD project with regular releases), it has everything this server
needs (routing, static files with range requests, streaming bodies, a ``TestClient`` on
httpx for in-process tests, ``TrustedHostMiddleware``) and nothing it does not (no
pydantic models, no template engine, no ORM); uvicorn is its reference server. The
handlers are plain ``async`` functions; model work runs in worker threads
(``run_in_threadpool``) so that one image being encoded does not block the page.

Endpoints (``{name}`` is an image's path relative to the folder)::

    GET  /                              the page (mmsam/serve/static/index.html)
    GET  /ort/...                       onnxruntime-web's files (npm ci, see setup_web.sh)
    GET  /api/config                    model facts and what the page can use
    GET  /api/images                    the images: name, height, width, masks saved
    POST /api/upload?filename=F         add an image (raw body; images only, bounded)
    GET  /api/file/{name}               the image as the browser shows it
    GET  /api/embedding/{name}          (1, C, E, E) float32 little-endian bytes
    GET  /api/decoder.onnx              the decoder graph for onnxruntime-web
    POST /api/decode/{name}             the 3 candidate masks of a prompt (fallback)
    POST /api/amg/{name}                automatic masks (AutomaticMaskGenerator)
    GET  /api/annotations/{name}        the image's saved masks and their revision
    PUT  /api/annotations/{name}        replace them (atomic; 409 if the revision the body
                                        names is not the file's: another tab saved)
    POST /api/export                    write exports/coco.json or exports/sa1b/
    GET  /api/exports/{file}            download an export

Every request body is bounded (``Limits.max_request_bytes``); image names are checked to
stay inside the folder (:class:`~mmsam.serve.folder.ImageFolder`).
"""

import json
import os.path as osp
from typing import Any, Optional, Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .engine import STABILITY_OFFSET, ServeModel
from .folder import BadRequest, ImageFolder
from .storage import AnnotationStore, StaleRevision

STATIC_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'static')
#: onnxruntime-web's browser files, installed by ``npm ci`` (tools/setup_web.sh)
ORT_DIST = osp.join(STATIC_DIR, 'node_modules', 'onnxruntime-web', 'dist')
ORT_FILES = ('ort.wasm.min.js', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm')
#: what a browser needs to run threaded WebAssembly (SharedArrayBuffer)
ISOLATION_HEADERS = {
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'X-Content-Type-Options': 'nosniff',
}


def ort_missing(dist: str = ORT_DIST) -> Optional[str]:
    """Why the in-browser decoder cannot be served (``None`` when it can)."""
    missing = [f for f in ORT_FILES if not osp.isfile(osp.join(dist, f))]
    if not missing:
        return None
    return (
        f'onnxruntime-web is not installed ({", ".join(missing)} missing in {dist}): '
        'run bash tools/setup_web.sh; until then the page decodes on the server'
    )


class _BodyLimit:
    """ASGI middleware: refuse a request body above ``limit`` bytes with 413.

    A declared ``Content-Length`` above the limit is refused before anything is read;
    a body sent in chunks is counted as it arrives.
    """

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        length = dict(scope.get('headers') or []).get(b'content-length')
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(self.limit)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > self.limit:
                    raise BadRequest(f'request body larger than {self.limit} bytes', 413)
            return message

        return await self.app(scope, counted, send)


class _Headers:
    """ASGI middleware: add ``headers`` to every response that does not set them."""

    def __init__(self, app, headers) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message['type'] == 'http.response.start':
                have = {k.lower() for k, _ in message.get('headers', [])}
                extra = [(k, v) for k, v in self.headers if k not in have]
                message = dict(message, headers=list(message.get('headers', [])) + extra)
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _too_large(limit: int) -> Response:
    return JSONResponse(
        {'error': f'request body larger than the server allows ({limit} bytes)'}, 413
    )


def _error(request: Request, exc: BadRequest) -> Response:
    body = {'error': str(exc)}
    if isinstance(exc, StaleRevision):
        body['revision'] = exc.revision  # the file's: what a reload would get
    return JSONResponse(body, status_code=exc.status)


def _server_error(request: Request, exc: Exception) -> Response:
    """A file the server cannot use (a corrupt annotation file, another encoder's store):
    500 with the message, which names the file, for the page to show."""
    return JSONResponse({'error': f'{type(exc).__name__}: {exc}'}, status_code=500)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as err:
        raise BadRequest(f'the request body is not JSON ({err})') from err


def create_app(
    folder: ImageFolder,
    engine: ServeModel,
    store: AnnotationStore,
    allowed_hosts: Optional[Sequence[str]] = None,
    ort_dist: str = ORT_DIST,
) -> Starlette:
    """The Starlette application serving ``folder`` with ``engine``'s model.

    Args:
        folder (ImageFolder): The images (and the request bounds, ``folder.limits``).
        engine (ServeModel): The model side.
        store (AnnotationStore): Where accepted masks are saved.
        allowed_hosts (Sequence[str], optional): ``Host`` header values accepted
            (DNS-rebinding guard); ``None`` accepts any.
        ort_dist (str): Folder of onnxruntime-web's browser files.

    Returns:
        Starlette: The ASGI app.
    """
    ort_problem = ort_missing(ort_dist)

    def sized(name: str):
        height, width = folder.size(name)
        folder.check_pixels(height, width, name)
        return height, width

    def embedding_of(name: str):
        path = folder.path(name)
        return engine.embedding(name, path, sized(name), lambda: folder.load(name))

    async def page(request: Request) -> Response:
        return FileResponse(osp.join(STATIC_DIR, 'index.html'))

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                'model': engine.model_name,
                'image_size': engine.image_size,
                'mask_threshold': engine.mask_threshold,
                'stability_offset': STABILITY_OFFSET,
                'ort': ort_problem is None,
                'ort_problem': ort_problem,
                'max_request_bytes': folder.limits.max_request_bytes,
            }
        )

    async def images(request: Request) -> Response:
        def listing():
            out = []
            for name in folder.names():
                try:
                    height, width = folder.size(name)
                except BadRequest:
                    continue  # unreadable files are left out of the listing
                path = store.path(name)
                out.append(
                    {'name': name, 'height': height, 'width': width, 'saved': osp.isfile(path)}
                )
            return out

        return JSONResponse({'images': await run_in_threadpool(listing)})

    async def upload(request: Request) -> Response:
        filename = request.query_params.get('filename', '')
        content = await request.body()
        name = await run_in_threadpool(folder.save_upload, filename, content)
        return JSONResponse({'name': name}, status_code=201)

    async def image_file(request: Request) -> Response:
        name = request.path_params['name']
        content, kind = await run_in_threadpool(folder.display, name)
        return Response(content, media_type=kind)

    async def embedding(request: Request) -> Response:
        emb = await run_in_threadpool(embedding_of, request.path_params['name'])
        data = emb.array.astype('<f4', copy=False).tobytes()
        headers = {
            'X-Embedding-Shape': ','.join(str(s) for s in emb.array.shape),
            'X-Original-Size': '{},{}'.format(*emb.original_size),
            'X-Input-Size': '{},{}'.format(*emb.input_size),
            'Cache-Control': 'no-store',
        }
        return Response(data, media_type='application/octet-stream', headers=headers)

    async def decoder(request: Request) -> Response:
        path = await run_in_threadpool(engine.decoder_file)
        return FileResponse(path, media_type='application/octet-stream')

    async def decode(request: Request) -> Response:
        name = request.path_params['name']
        body = await _json(request)
        if not isinstance(body, dict):
            raise BadRequest('the body must be {"points": [[x, y]], "labels": [1], "box": null}')

        def work():
            emb = embedding_of(name)
            return engine.decode(
                emb, body.get('points') or [], body.get('labels') or [], body.get('box')
            )

        return JSONResponse(await run_in_threadpool(work))

    async def amg(request: Request) -> Response:
        name = request.path_params['name']

        def work():
            emb = embedding_of(name)
            return engine.amg(folder.load(name), emb)

        records = await run_in_threadpool(work)
        keys = ('segmentation', 'bbox', 'area', 'predicted_iou', 'stability_score', 'point_coords')
        return JSONResponse({'masks': [{k: r[k] for k in keys} for r in records]})

    async def annotations(request: Request) -> Response:
        name = request.path_params['name']
        height, width = await run_in_threadpool(sized, name)
        if request.method == 'GET':
            doc = await run_in_threadpool(store.read, name, height, width)
            return JSONResponse(doc)
        body = await _json(request)
        if not isinstance(body, dict) or 'annotations' not in body:
            raise BadRequest('the body must be {"annotations": [...], "revision": N}')
        doc = await run_in_threadpool(
            store.write, name, height, width, body['annotations'], body.get('revision')
        )
        return JSONResponse(doc)

    async def export(request: Request) -> Response:
        body = await _json(request)
        kind = body.get('format') if isinstance(body, dict) else None

        def work():
            listed = [(n, *sized(n)) for n in folder.names()]
            if kind == 'coco':
                store.export_coco(listed, body.get('mask_format', 'rle'))
                return {'files': ['coco.json']}
            if kind == 'sa1b':
                root = store.export_path()
                files = store.export_sa1b(listed)
                return {'files': [osp.relpath(f, root).replace('\\', '/') for f in files]}
            raise BadRequest('format must be "coco" or "sa1b"')

        return JSONResponse(await run_in_threadpool(work))

    async def export_file(request: Request) -> Response:
        path = store.export_file(request.path_params['file'])
        return FileResponse(path, media_type='application/json')

    routes = [
        Route('/', page),
        Route('/api/config', config),
        Route('/api/images', images),
        Route('/api/upload', upload, methods=['POST']),
        Route('/api/file/{name:path}', image_file),
        Route('/api/embedding/{name:path}', embedding),
        Route('/api/decoder.onnx', decoder),
        Route('/api/decode/{name:path}', decode, methods=['POST']),
        Route('/api/amg/{name:path}', amg, methods=['POST']),
        Route('/api/annotations/{name:path}', annotations, methods=['GET', 'PUT']),
        Route('/api/export', export, methods=['POST']),
        Route('/api/exports/{file:path}', export_file),
        Mount('/static', StaticFiles(directory=STATIC_DIR), name='static'),
    ]
    if ort_problem is None:
        routes.append(Mount('/ort', StaticFiles(directory=ort_dist), name='ort'))
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    middleware.append(Middleware(_BodyLimit, limit=folder.limits.max_request_bytes))
    middleware.append(Middleware(_Headers, headers=ISOLATION_HEADERS))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={BadRequest: _error, ValueError: _server_error, OSError: _server_error},
    )
