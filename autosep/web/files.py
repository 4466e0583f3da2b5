"""File URLs of removed sessions answer 404 (Gradio answers a missing file with 403 "not allowed", which reads
like a permission problem and tells a visitor nothing). An ASGI middleware, no Gradio in here."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

FILE_ROUTE = "/file="


class GoneFiles:
    """``GET .../file=PATH`` for a PATH under ``root`` that no longer exists -> 404 Not Found."""

    def __init__(self, app, root: Path):
        self.app, self.root = app, Path(root).resolve()

    def _gone(self, path: str) -> bool:
        at = path.find(FILE_ROUTE)
        if at < 0:
            return False
        target = Path(unquote(path[at + len(FILE_ROUTE):]))
        try:
            target = target.resolve()
        except (OSError, RuntimeError):
            return False
        return target.is_relative_to(self.root) and not target.is_file()

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") == "http" and self._gone(scope.get("path", "")):
            from starlette.responses import PlainTextResponse

            await PlainTextResponse("Not Found: this file was removed with its session", status_code=404)(
                scope, receive, send)
            return
        await self.app(scope, receive, send)
