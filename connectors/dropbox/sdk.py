"""The Dropbox SDK, without loading the namespaces the relay never calls: ``dropbox.base`` imports every
API namespace at once, and Team Log's generated module alone (4 MB of source) costs a worker ~18 MiB.
team_log, team and paper are loaded lazily (importlib's LazyLoader): only if something reads them."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

_LAZY = frozenset({"dropbox.team_log", "dropbox.team", "dropbox.paper"})


class _LazyNamespaces(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _LAZY:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


_finder = _LazyNamespaces()
sys.meta_path.insert(0, _finder)
try:
    import dropbox
    from dropbox import exceptions, files
    from dropbox.session import HOST_API, HOST_CONTENT, HOST_NOTIFY
    from dropbox.stone_base import Union
finally:
    sys.meta_path.remove(_finder)

__all__ = ["HOST_API", "HOST_CONTENT", "HOST_NOTIFY", "Union", "dropbox", "exceptions", "files"]
