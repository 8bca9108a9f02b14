"""The image map: which local command stands in for which container image.

The file is a JSON object ``{"<image or image prefix>": {"argv": [...], "args": [...], "env": {...},
"workingDir": "...", "user": 10001, "paths": ["/opt/python"]}}``. ``argv`` plays the image's ENTRYPOINT,
``args`` its CMD, ``env`` its ENV, ``workingDir`` its WORKDIR and ``user`` its USER (a numeric uid);
``paths`` are host paths that belong to the image (an interpreter under root's private home): they are
mounted read-only where they are, and an ancestor others may not search is masked by an empty directory
around them. A key matches an image when it is the image, or a prefix of it that ends where a name part
ends (``clm-trainer`` matches ``clm-trainer:0.1`` and ``clm-trainer@sha256:...`` but not
``clm-trainer-x``); the longest matching key wins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# containerd's default PATH for a container whose image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageMapError(ValueError):
    """The image map file is malformed; the message names the key and the field."""


@dataclass(frozen=True)
class LocalImage:
    """What the image map says about one image: the OCI config fields a kubelet would read."""

    key: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: int | None = None
    paths: tuple[str, ...] = ()  # host paths that belong to the "image": mounted read-only where they are

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the entry: changes whenever the mapping does, like an image digest."""
        canonical = json.dumps(
            [
                self.key,
                self.entrypoint,
                self.cmd,
                sorted(self.env.items()),
                self.working_dir,
                self.user,
                self.paths,
            ]
        )
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def command_line(image: LocalImage, command: list[str] | None, args: list[str] | None) -> list[str]:
    """The argv a container runtime executes (Kubernetes' rules for command/args vs ENTRYPOINT/CMD).

    ``command`` set: it replaces the ENTRYPOINT and the image CMD is dropped; ``args`` set: they replace the
    CMD. An empty list counts as unset, as in Kubernetes. The result may be empty (nothing to run).
    """
    entrypoint = list(command) if command else list(image.entrypoint)
    if args:
        tail = list(args)
    elif command:
        tail = []
    else:
        tail = list(image.cmd)
    return entrypoint + tail


def key_matches(key: str, image: str) -> bool:
    """Whether image-map ``key`` names ``image``: equal, or a prefix ending at a ``:``/``@``/``/``
    boundary."""
    if image == key:
        return True
    if not key or not image.startswith(key):
        return False
    return key[-1] in ":@/" or image[len(key)] in ":@/"


@dataclass
class ImageMap:
    """The parsed map; ``lookup`` returns None for an image the node cannot "pull"."""

    images: dict[str, LocalImage]
    source: str = ""

    def lookup(self, image: str) -> LocalImage | None:
        matches = [key for key in self.images if key_matches(key, image)]
        if not matches:
            return None
        return self.images[max(matches, key=len)]

    @classmethod
    def parse(cls, raw: Any, source: str = "") -> ImageMap:
        if not isinstance(raw, dict):
            raise ImageMapError(f"{source or 'image map'}: expected a JSON object of image -> entry")
        images: dict[str, LocalImage] = {}
        for key, entry in raw.items():
            where = f"{source or 'image map'}: [{key!r}]"
            if not isinstance(entry, dict):
                raise ImageMapError(f"{where}: expected an object with argv/args/env/workingDir/user")
            unknown = set(entry) - {"argv", "args", "env", "workingDir", "user", "paths"}
            if unknown:
                raise ImageMapError(
                    f"{where}: unknown field(s) {sorted(unknown)}; allowed: argv, args, env, workingDir, "
                    "user, paths"
                )
            for name in ("argv", "args", "paths"):
                value = entry.get(name, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ImageMapError(f"{where}.{name}: expected a list of strings")
            env = entry.get("env", {})
            if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
                raise ImageMapError(f"{where}.env: expected an object of string values")
            user = entry.get("user")
            if user is not None and (not isinstance(user, int) or isinstance(user, bool) or user < 0):
                raise ImageMapError(f"{where}.user: expected a non-negative integer uid")
            working_dir = entry.get("workingDir", "")
            if not isinstance(working_dir, str):
                raise ImageMapError(f"{where}.workingDir: expected a string")
            paths = entry.get("paths", [])
            if not all(p.startswith("/") for p in paths):
                raise ImageMapError(f"{where}.paths: expected absolute host paths")
            images[str(key)] = LocalImage(
                key=str(key),
                entrypoint=tuple(entry.get("argv", [])),
                cmd=tuple(entry.get("args", [])),
                env=dict(env),
                working_dir=working_dir,
                user=user,
                paths=tuple(paths),
            )
        return cls(images, source)


class ImageMapFile:
    """The map behind a file, re-read when the file changes (so a test or an operator can add an image)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._map = ImageMap({}, str(path))
        self.current()  # a malformed file is an error at start-up, not at the first pod

    def current(self) -> ImageMap:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ImageMapError(f"{self.path}: not JSON ({exc})") from exc
            self._map = ImageMap.parse(raw, str(self.path))
            self._stamp = stamp
        return self._map
