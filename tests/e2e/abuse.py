"""Shared by tests/e2e/test_abuse.py, bench/upload_drops.py and bench/soak.py: the awkward images that used to drop
the connection, and a watch over one browser page's websocket that counts what a user would call a dropped
connection."""
from __future__ import annotations

import io

from PIL import Image, ImageDraw

UPLOAD_INPUT = "[data-testid='stMain'] [data-testid='stFileUploaderDropzoneInput']"


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def la_png(size: int = 200) -> bytes:
    """A greyscale + alpha PNG (mode LA): a dark ring on a transparent background."""
    im = Image.new("LA", (size, size), (255, 0))
    ImageDraw.Draw(im).ellipse((size // 4, size // 7, 3 * size // 4, 6 * size // 7), outline=(0, 255), width=size // 11)
    return _png(im)


def palette_trns_png(size: int = 200) -> bytes:
    """A palette PNG with a transparent colour (mode P with tRNS): a dark "1" on transparent white."""
    im = Image.new("P", (size, size), 0)
    im.putpalette([255, 255, 255, 0, 0, 0, 200, 30, 30] + [0] * 759)
    d = ImageDraw.Draw(im)
    d.line((size // 2, size // 10, size // 2, 9 * size // 10), fill=1, width=size // 10)
    d.line((3 * size // 10, 3 * size // 10, size // 2, size // 10), fill=2, width=size // 14)
    return _png(im, transparency=0)


AWKWARD = [("ring-la.png", la_png()), ("one-palette-trns.png", palette_trns_png())]


class SocketWatch:
    """Counts, for one playwright page: ForwardMsgs sent as references to the browser's cache (`refs`), fatal
    websocket errors in the console (`drops`, e.g. "Cached ForwardMsg MISS") and the messages of those errors."""

    def __init__(self, page):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._msg = ForwardMsg
        self.refs = 0
        self.frames = 0
        self.errors: list[str] = []
        page.on("websocket", self._on_socket)
        page.on("console", self._on_console)

    def _on_socket(self, ws) -> None:
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload) -> None:
        if not isinstance(payload, (bytes, bytearray)):
            return
        m = self._msg()
        m.ParseFromString(bytes(payload))
        self.frames += 1
        if m.WhichOneof("type") == "ref_hash":
            self.refs += 1

    def _on_console(self, message) -> None:
        text = message.text
        if "Websocket connection encountered fatal error" in text or "Cached ForwardMsg MISS" in text:
            self.errors.append(text)

    @property
    def drops(self) -> int:
        """Fatal websocket errors so far (each one shows the "Connection error" dialog)."""
        return sum("fatal error" in e for e in self.errors)


def connection_error_shown(page) -> bool:
    """Whether Streamlit shows its connection-error dialog (or the 'Connecting' status) right now."""
    return page.get_by_text("Connection error").count() > 0
