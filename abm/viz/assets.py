"""The page's JS/CSS, served only from the assets installed with Solara (offline, read-only).

Solara's asset proxy (`/_solara/cdn/...`, `solara.server.cdn_helper.get_path`) fetches a file
it does not hold from the public CDN, synchronously, four times with 1, 2 and 4 s pauses (about
7 s without a network, in one of the server's worker threads: 50 such requests stalled the
whole server), and removes a *folder* it finds where a file was asked for (a GET for
`/_solara/cdn/echarts@5.4.0/theme` deleted that folder of the installed assets). Solara has
no setting for an offline proxy, so `serve_offline` replaces the lookup its static route
calls (`solara.server.starlette.get_path`) with `installed_path`: a regular file inside the
cache folder is served, anything else is a 404 at once, and nothing is written or removed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["installed_path", "serve_offline"]


def installed_path(base_cache_dir: Path, path: str) -> Path:
    """The installed asset file for the request path `path` under `base_cache_dir`.

    Mirrors Solara's mapping (a one-part path names `<part>/__main.js`); raises
    PermissionError for a path outside the folder (traversal, links out of it) and
    FileNotFoundError for anything that is not a regular file there. Never fetches, writes
    or removes anything.
    """
    parts = path.replace("\\", "/").split("/")
    store = Path(path) / "__main.js" if len(parts) == 1 else Path(path)
    base = Path(base_cache_dir).resolve()
    target = (base / store).resolve()
    if not target.is_relative_to(base):
        raise PermissionError(f"{path}: outside the asset folder")
    if not target.is_file():
        raise FileNotFoundError(f"{path}: no such asset installed")
    return target


def serve_offline() -> None:
    """Make Solara's asset route (`StaticCdn.lookup_path`) use `installed_path`. Called when
    the app module is imported by the server process; a no-op where Solara's Starlette server
    is not loaded."""
    import sys

    starlette = sys.modules.get("solara.server.starlette")
    if starlette is not None and hasattr(starlette, "get_path"):
        starlette.get_path = installed_path
