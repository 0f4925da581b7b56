"""The files behind image and thumbnail URLs: Meta's CDN, with signed URLs that expire, and their bytes.

Meta serves an image's ``url`` (AdImage) and a creative's ``image_url`` and ``thumbnail_url`` from its CDN
(``scontent.xx.fbcdn.net``) with a signature in the query string: ``oh`` (the hash) and ``oe`` (the expiry, a
Unix time in hexadecimal). Once ``oe`` has passed the CDN answers HTTP 403 "URL signature expired"; a URL whose
hash does not match answers 403 "Bad URL hash". That is why a backup that keeps only the URLs points at files
that no longer load a few weeks later. The CDN needs no access token: a client must not send one there.

Here the CDN is the sandbox itself, under ``/_cdn/``: :class:`Cdn` signs URLs (expiry = the object's last
change + ``ttl_seconds``, so a URL is a pure function of the object, as the rest of the data is) and checks
them, and :func:`file_bytes` makes each file's content, deterministic per file, of a size fixed by its key.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass

CDN_PREFIX = "/_cdn/"
#: The CDN path of an account's image (``{hash}`` names it, as Meta's ``_n.jpg`` files are named by an id).
IMAGE_DIR = "v/t45.1600-4"
#: The CDN path of a creative's thumbnail.
THUMBNAIL_DIR = "v/t15.5256-10"
_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_JPEG_TAIL = b"\xff\xd9"
_PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00@\x00\x00\x00@\x08\x02\x00\x00\x00"
_PNG_TAIL = b"\x00\x00\x00\x00IEND\xaeB`\x82"
MIME_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


@dataclass
class Cdn:
    """Signs and checks CDN URLs; ``base`` is set to the sandbox's own address once its socket is bound."""

    seed: int
    ttl_seconds: float
    base: str = "https://scontent.example.net"

    def _hash(self, path: str, expiry_hex: str) -> str:
        key = f"sandbox-cdn-{self.seed}".encode()
        return hmac.new(key, f"{path}:{expiry_hex}".encode(), hashlib.sha256).hexdigest()[:40]

    def url(self, path: str, changed_epoch: int) -> str:
        """The signed URL of a CDN path: valid until ``changed_epoch + ttl_seconds``."""
        expiry_hex = f"{int(changed_epoch + self.ttl_seconds):x}"
        signature = f"oh=00_{self._hash(path, expiry_hex)}&oe={expiry_hex}"
        return f"{self.base}{CDN_PREFIX}{path}?_nc_cat=1&_nc_sid=5f2048&{signature}"

    def check(self, path: str, oh: str | None, oe: str | None, now: float) -> str | None:
        """Why the CDN refuses a request (Meta's 403 texts), or ``None`` when the signature holds."""
        if not oh or not oe or oh != f"00_{self._hash(path, oe)}":
            return "Bad URL hash"
        try:
            expiry = int(oe, 16)
        except ValueError:
            return "Bad URL hash"
        return "URL signature expired" if now > expiry else None


def image_path(image_hash: str, account_id: str) -> str:
    """An image's CDN path (without ``/_cdn/``)."""
    return f"{IMAGE_DIR}/{image_hash}_{account_id}_n.jpg"


def thumbnail_path(creative_id: str) -> str:
    """A creative's thumbnail's CDN path (without ``/_cdn/``)."""
    return f"{THUMBNAIL_DIR}/{creative_id}_thumb_n.png"


def file_bytes(key: int, size: int, extension: str) -> bytes:
    """A file's content: a JPEG or PNG head, ``size`` bytes in all, the middle deterministic noise of ``key``."""
    head, tail = (_JPEG_HEAD, _JPEG_TAIL) if extension == "jpg" else (_PNG_HEAD, _PNG_TAIL)
    body = random.Random(key).randbytes(max(0, size - len(head) - len(tail)))  # noqa: S311 - test data
    return head + body + tail
