"""Pod volumes: what each holds (pure planning) and writing it to a directory (materialisation).

Supported like a kubelet: ``emptyDir`` (a directory, mode 0777; ``medium``/``sizeLimit`` are not enforced),
``secret`` and ``configMap`` (all keys or ``items``, ``defaultMode``/``mode``, ``optional``), ``downwardAPI``,
``projected`` (secret, configMap, downwardAPI and ``serviceAccountToken`` sources: the token comes from the
TokenRequest API, bound to the pod, and is refreshed at 80% of its lifetime) and ``hostPath``. File volumes
are written like the kubelet's AtomicWriter: the files live in a ``..<timestamp>`` directory, ``..data``
points at it and each top-level name is a symlink through ``..data``, so an update swaps everything at once.
They are mounted read-only. With ``fsGroup`` their files belong to that group and are group-readable.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clm_sandbox.node.env import (
    ContainerConfigError,
    Lookup,
    NodeContext,
    expand,
    field_path_value,
    resource_field_value,
)

DEFAULT_MODE = 0o644  # the API default of defaultMode (420)
DEFAULT_TOKEN_SECONDS = 3600
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
FILE_VOLUME_KINDS = ("secret", "configMap", "downwardAPI", "projected")
SUPPORTED_KINDS = ("emptyDir", "hostPath", *FILE_VOLUME_KINDS)

# (audience or None for the API server's default, expirationSeconds) -> (token, expiration epoch seconds)
TokenSource = Callable[[str | None, int], tuple[str, float]]


class VolumeError(Exception):
    """A volume cannot be set up (yet): reported as FailedMount, the pod waits in ContainerCreating."""


@dataclass(frozen=True)
class VolumeFile:
    path: str  # relative to the volume, validated (no "..", not absolute)
    data: bytes
    mode: int


@dataclass(frozen=True)
class VolumeContent:
    """One volume as the node sets it up."""

    name: str
    kind: str  # one of SUPPORTED_KINDS
    files: tuple[VolumeFile, ...] = ()
    host_path: str = ""
    host_path_type: str = ""
    refresh_at: float | None = None  # epoch seconds when a token in it should be renewed

    @property
    def read_only(self) -> bool:
        """Secret, ConfigMap, downward API and projected volumes are always mounted read-only."""
        return self.kind in FILE_VOLUME_KINDS


@dataclass(frozen=True)
class Mount:
    """One bind mount of a container: host ``source`` at ``target`` inside its mount namespace."""

    source: str
    target: str
    read_only: bool
    volume: str = ""
    create_source: bool = False  # a subPath that does not exist yet: the kubelet creates it as a directory


def volume_kind(volume: Mapping[str, Any]) -> str:
    """The volume's source type, or raises VolumeError naming the unsupported one."""
    kinds = [key for key in volume if key != "name"]
    for kind in kinds:
        if kind in SUPPORTED_KINDS:
            return kind
    raise VolumeError(
        f'volume "{volume.get("name")}": unsupported volume type {kinds or ["(none)"]}; the node '
        f"agent supports {', '.join(SUPPORTED_KINDS)}"
    )


def check_relative(path: str, where: str) -> str:
    """A volume item's path: relative, no ``..`` element (the API validates this too; we do not trust it)."""
    if not path or path.startswith("/") or ".." in path.split("/"):
        raise VolumeError(f"{where}: path {path!r} must be relative and may not contain '..'")
    return posixpath.normpath(path)


def _keyed_files(
    kind: str,
    name: str,
    data: Mapping[str, bytes] | None,
    items: list[Mapping[str, Any]] | None,
    optional: bool,
    default_mode: int,
    namespace: str,
    where: str,
) -> list[VolumeFile]:
    label = "secret" if kind == "Secret" else "configmap"
    if data is None:
        if optional:
            return []
        raise VolumeError(f'{where}: {label} "{name}" not found')
    if not items:
        return [
            VolumeFile(check_relative(key, where), value, default_mode) for key, value in sorted(data.items())
        ]
    files: list[VolumeFile] = []
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{where}: {label} {namespace}/{name} has no key {key!r}")
        mode = item.get("mode")
        files.append(
            VolumeFile(
                check_relative(str(item.get("path", key)), where),
                data[key],
                default_mode if mode is None else int(mode),
            )
        )
    return files


def _downward_files(
    pod: Mapping[str, Any],
    items: list[Mapping[str, Any]],
    default_mode: int,
    context: NodeContext,
    where: str,
) -> list[VolumeFile]:
    files: list[VolumeFile] = []
    for item in items:
        path = check_relative(str(item.get("path", "")), where)
        try:
            if "fieldRef" in item:
                value = field_path_value(
                    pod, str(item["fieldRef"].get("fieldPath", "")), context, volume=True
                )
            elif "resourceFieldRef" in item:
                value = resource_field_value(pod, "", item["resourceFieldRef"], context)
            else:
                raise VolumeError(f"{where}: item {path!r} has neither fieldRef nor resourceFieldRef")
        except ContainerConfigError as exc:
            raise VolumeError(f"{where}: {exc}") from None
        mode = item.get("mode")
        files.append(VolumeFile(path, value.encode(), default_mode if mode is None else int(mode)))
    return files


def plan_volume(
    pod: Mapping[str, Any],
    volume: Mapping[str, Any],
    *,
    lookup: Lookup,
    tokens: TokenSource,
    context: NodeContext,
    now: float,
) -> VolumeContent:
    """What ``volume`` of ``pod`` contains now. Raises VolumeError (kubelet's FailedMount) when it cannot."""
    name = str(volume.get("name", ""))
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    kind = volume_kind(volume)
    where = f'volume "{name}"'
    source = volume[kind] or {}
    if kind == "emptyDir":
        return VolumeContent(name, kind)
    if kind == "hostPath":
        return VolumeContent(
            name, kind, host_path=str(source.get("path", "")), host_path_type=str(source.get("type") or "")
        )
    default_mode = int(source.get("defaultMode", DEFAULT_MODE))
    if kind in ("secret", "configMap"):
        object_kind = "Secret" if kind == "secret" else "ConfigMap"
        object_name = str(source.get("secretName" if kind == "secret" else "name", ""))
        files = _keyed_files(
            object_kind,
            object_name,
            lookup(object_kind, namespace, object_name),
            source.get("items"),
            bool(source.get("optional")),
            default_mode,
            namespace,
            where,
        )
        return VolumeContent(name, kind, _unique(files, where))
    if kind == "downwardAPI":
        return VolumeContent(
            name,
            kind,
            _unique(_downward_files(pod, source.get("items") or [], default_mode, context, where), where),
        )
    files = []
    refresh_at: float | None = None
    for projection in source.get("sources") or []:
        if "secret" in projection or "configMap" in projection:
            object_kind = "Secret" if "secret" in projection else "ConfigMap"
            ref = projection["secret" if object_kind == "Secret" else "configMap"]
            object_name = str(ref.get("name", ""))
            files += _keyed_files(
                object_kind,
                object_name,
                lookup(object_kind, namespace, object_name),
                ref.get("items"),
                bool(ref.get("optional")),
                default_mode,
                namespace,
                where,
            )
        elif "downwardAPI" in projection:
            files += _downward_files(
                pod, projection["downwardAPI"].get("items") or [], default_mode, context, where
            )
        elif "serviceAccountToken" in projection:
            ref = projection["serviceAccountToken"]
            seconds = int(ref.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
            token, expires = tokens(ref.get("audience") or None, seconds)
            files.append(
                VolumeFile(check_relative(str(ref.get("path", "")), where), token.encode(), default_mode)
            )
            renew = token_refresh_at(now, expires)
            refresh_at = renew if refresh_at is None else min(refresh_at, renew)
        else:
            raise VolumeError(f"{where}: unsupported projected source {sorted(projection)}")
    return VolumeContent(name, kind, _unique(files, where), refresh_at=refresh_at)


def token_refresh_at(issued: float, expires: float) -> float:
    """When the kubelet renews a projected token: at 80% of its lifetime, and at least once a day."""
    return issued + min(0.8 * max(expires - issued, 0.0), 24 * 3600.0)


def _unique(files: list[VolumeFile], where: str) -> tuple[VolumeFile, ...]:
    seen: set[str] = set()
    for entry in files:
        if entry.path in seen:
            raise VolumeError(f"{where}: two items write the path {entry.path!r}")
        seen.add(entry.path)
    return tuple(files)


def effective_mode(mode: int, fs_group: int | None, read_only: bool) -> int:
    """A file's mode after the kubelet applies ``fsGroup``: group-readable (and writable unless read-only)."""
    if fs_group is None:
        return mode & 0o7777
    return (mode | (0o440 if read_only else 0o660)) & 0o7777


def plan_mounts(
    container: Mapping[str, Any],
    volume_dirs: Mapping[str, str],
    read_only_volumes: set[str],
    env: Mapping[str, str],
    termination_log: str,
) -> list[Mount]:
    """The container's bind mounts: each volumeMount (with subPath/subPathExpr) and the termination-message
    file at ``terminationMessagePath``; parents before children, otherwise in the pod's order."""
    mounts: list[Mount] = []
    for entry in container.get("volumeMounts") or []:
        name = str(entry.get("name", ""))
        if name not in volume_dirs:
            raise VolumeError(f'volumeMount "{entry.get("mountPath")}": no volume named "{name}" in the pod')
        target = str(entry.get("mountPath", ""))
        if not target.startswith("/"):
            raise VolumeError(f'volumeMount of "{name}": mountPath {target!r} must be absolute')
        sub = str(entry.get("subPath") or "")
        if entry.get("subPathExpr"):
            sub = expand(str(entry["subPathExpr"]), env)
        source = volume_dirs[name]
        if sub:
            source = os.path.join(source, check_relative(sub, f'volumeMount "{target}" subPath'))
        mounts.append(
            Mount(
                source,
                posixpath.normpath(target),
                bool(entry.get("readOnly")) or name in read_only_volumes,
                name,
                bool(sub),
            )
        )
    message_path = str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH)
    mounts.append(Mount(termination_log, posixpath.normpath(message_path), False))
    return sorted(mounts, key=lambda mount: len(Path(mount.target).parts))


# -- materialisation -----------------------------------------------------------------------------------------

DATA_LINK = "..data"


def write_files(
    directory: Path, files: tuple[VolumeFile, ...], *, fs_group: int | None, read_only: bool = True
) -> bool:
    """Make ``directory`` hold exactly ``files`` (AtomicWriter layout); returns False when nothing changed."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {f.path: (f.data, effective_mode(f.mode, fs_group, read_only)) for f in files}
    if current_files(directory) == wanted:
        return False
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir(mode=0o755)
    for path, (data, mode) in wanted.items():
        target = stamp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, mode)
        if fs_group is not None:
            os.chown(target, 0, fs_group)
    for sub in [stamp, *(p for p in stamp.rglob("*") if p.is_dir())]:
        os.chmod(sub, 0o755 if fs_group is None else 0o2755)
        if fs_group is not None:
            os.chown(sub, 0, fs_group)
    temporary = directory / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(stamp.name)
    os.replace(temporary, directory / DATA_LINK)
    tops = {path.split("/")[0] for path in wanted}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{top}")
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            if entry.name not in (DATA_LINK, stamp.name) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
        elif entry.name not in tops and entry.is_symlink():
            entry.unlink()
    os.chmod(directory, 0o755 if fs_group is None else 0o2755)
    if fs_group is not None:
        os.chown(directory, 0, fs_group)
    return True


def current_files(directory: Path) -> dict[str, tuple[bytes, int]]:
    """The files an AtomicWriter directory holds now: path -> (bytes, mode)."""
    data = directory / DATA_LINK
    if not data.is_dir():
        return {}
    found: dict[str, tuple[bytes, int]] = {}
    for path in data.rglob("*"):
        if path.is_file():
            found[path.relative_to(data).as_posix()] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return found


def prepare_empty_dir(directory: Path, fs_group: int | None) -> None:
    """An emptyDir: a world-writable directory (the kubelet's 0777), group-owned by ``fsGroup`` (with
    setgid)."""
    directory.mkdir(parents=True, exist_ok=True)
    if fs_group is not None:
        os.chown(directory, 0, fs_group)
        os.chmod(directory, 0o2777)
    else:
        os.chmod(directory, 0o777)


def check_host_path(path: str, kind: str) -> None:
    """A hostPath volume's ``type`` check (creating for the ...OrCreate types), as the kubelet does."""
    target = Path(path)
    if kind == "DirectoryOrCreate":
        target.mkdir(parents=True, exist_ok=True)
        return
    if kind == "FileOrCreate":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
        return
    checks: dict[str, Callable[[os.stat_result], bool]] = {
        "Directory": lambda s: stat.S_ISDIR(s.st_mode),
        "File": lambda s: stat.S_ISREG(s.st_mode),
        "Socket": lambda s: stat.S_ISSOCK(s.st_mode),
        "CharDevice": lambda s: stat.S_ISCHR(s.st_mode),
        "BlockDevice": lambda s: stat.S_ISBLK(s.st_mode),
    }
    if kind in ("", None):
        return
    if kind not in checks:
        raise VolumeError(f"hostPath {path}: unknown type {kind!r}")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise VolumeError(f"hostPath type check failed: {path} does not exist") from None
    if not checks[kind](info):
        raise VolumeError(f"hostPath type check failed: {path} is not a {kind}")
