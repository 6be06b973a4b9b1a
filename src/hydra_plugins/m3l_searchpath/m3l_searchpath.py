"""Hydra search-path plugin: puts the user's m3l config dirs before the packaged configs."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class M3LSearchPathPlugin(SearchPathPlugin):
    """Adds ``$M3L_CONFIG_PATH``, ``~/.config/m3l`` (XDG) and ``/etc/m3l``, in that priority."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from m3l.config import user_config_dirs

        # prepend in reverse so the first directory ends up first (highest priority)
        for directory in reversed(user_config_dirs()):
            search_path.prepend(provider="m3l-user", path=f"file://{directory}")
