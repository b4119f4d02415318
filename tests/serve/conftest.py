"""Fixtures of the ``mmsam serve`` tests (defined in serve_fixtures.py)."""

from serve_fixtures import client, image_folder, tiny_sam  # noqa: F401
