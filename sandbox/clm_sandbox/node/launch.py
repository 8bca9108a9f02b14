"""The container shim: sets up one container's private mount namespace, runs it, records how it ended.

Run by the node agent as ``python -I -S launch.py run PLAN.json`` (stdlib only, so it starts fast and cannot
be broken by the project's imports) with stdout/stderr already pointing at the container's log file, or as
``... exec PLAN.json`` to run a command inside a running container (exec probes). As root it:

1. unshares a mount and a UTS namespace (hostname = the pod's), makes every mount private;
2. builds the container's root from a recursive bind of the host's ``/`` (its other mounts included):
   read-only for ``readOnlyRootFilesystem`` (host files stay live inside), else covered by an overlay whose
   upper layer is the pod's, so that writes never reach the host. A mount point that does not exist is
   created in an overlay on its parent directory (``/dev/termination-log``, ``/etc/clm/...``), never on
   the host; the container's own earlier mounts below such a parent are moved on top again. Image paths
   under a directory others may not search (root's 0700 home) are exposed through an empty tmpfs there;
3. bind-mounts each volume (read-only ones remounted read-only), writes /etc/hostname and /etc/hosts,
   remounts the root read-only for ``readOnlyRootFilesystem``; the container chroots into it;
4. forks: the child becomes its own process group, sets no_new_privs, drops to the pod's uid/gid/groups,
   chdirs and execs; the shim (a child subreaper) waits, kills whatever the container left behind, and
   writes the exit status (``status.json``) atomically. ``pid`` holds the container's pid and start time
   once exec succeeded; a failure before exec is reported as ``startError``.

No PID namespace: the container's main process is not PID 1 (SIGTERM without a handler ends it, where a
PID 1 would ignore it), and it sees the host's processes.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {source or fstype} on {target}",
    )


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_table() -> list[tuple[int, int, str]]:
    """(id, parent id, mount point) of every mount of this process's namespace."""
    rows = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            rows.append((int(parts[0]), int(parts[1]), _unescape(parts[4])))
    return rows


def topmost_under(table: list[tuple[int, int, str]], base: str) -> list[str]:
    """Mount points strictly under ``base`` that are not under another such mount point (sorted)."""
    base = base.rstrip("/") + "/"
    inside = sorted({p for _, _, p in table if p.startswith(base) and p != base}, key=lambda p: (len(p), p))
    chosen: list[str] = []
    for point in inside:
        if not any(point == c or point.startswith(c.rstrip("/") + "/") for c in chosen):
            chosen.append(point)
    return chosen


def resolve_in_root(root: str, path: str) -> str:
    """``path`` of the container as a host path under ``root``, following symlinks as the container would."""
    parts = [p for p in path.split("/") if p]
    current = ""
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = current.rsplit("/", 1)[0] if "/" in current else ""
            continue
        candidate = f"{current}/{part}"
        host = root + candidate
        if os.path.islink(host):
            hops += 1
            if hops > 40:
                raise SetupError(f"{path}: too many levels of symbolic links")
            link = os.readlink(host)
            parts = [p for p in link.split("/") if p] + parts
            if link.startswith("/"):
                current = ""
            continue
        current = candidate
    return root + current if current else root


class RootBuilder:
    """The container's root filesystem and its mounts (steps 2 and 3)."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.scratch = plan["scratch"]
        self.root = os.path.join(self.scratch, "root")
        self.pod_dir = plan["podDir"].rstrip("/") + "/"
        self.host_table = mount_table()
        # Container path -> what is mounted there: root/overlay/volume (we may create in it) or host.
        self.layers: dict[str, str] = {}
        self.root_shadows: list[str] = []
        self.ours: list[str] = []  # container paths of the mounts made for the container
        self.overlays = 0

    def _layer_of(self, path: str) -> str:
        best = "/"
        for point in self.layers:
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best = point
        return best

    def build(self) -> None:
        """The root starts as a recursive bind of the host's: for a read-only root, host files stay live
        (a clock file the tests rewrite), which an overlay's lower layer does not promise."""
        os.makedirs(self.root, exist_ok=True)
        mount("/", self.root, None, MS_BIND | MS_REC)
        self.layers["/"] = "host"
        for point in topmost_under(self.host_table, "/"):
            self.layers[point] = "host"
        if not self.plan.get("readOnlyRoot"):
            # A writable root writes into a layer of its own, never into the host's files (at the price of
            # the overlay's snapshot semantics for host files that change while it runs).
            self._shadow("/")

    def _shadow(self, directory: str) -> None:
        """An overlay on the bound host directory ``directory`` (a container path), so that a mount point
        can be created in it without touching the host; the host mounts below it are bound back in, and
        the container's own mounts made below it before are moved aside and back on top."""
        self.overlays += 1
        base = os.path.join(self.scratch, f"shadow-{self.overlays}")
        upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        host = self.root.rstrip("/") + directory if directory != "/" else self.root
        if self._layer_of(directory) == "/":
            self.root_shadows.append(host)  # part of the root filesystem: read-only with it
        held: list[tuple[str, str]] = []
        for point in topmost_under([(0, 0, p) for p in self.ours], directory):
            hold = os.path.join(base, f"hold-{len(held)}")
            if os.path.isdir(self.root + point):
                os.makedirs(hold, exist_ok=True)
            else:
                with open(hold, "a", encoding="utf-8"):
                    pass
            mount(self.root + point, hold, None, MS_MOVE)
            held.append((point, hold))
        mount("overlay", host, "overlay", 0, f"lowerdir={host},upperdir={upper},workdir={work}")
        for point in topmost_under(self.host_table, directory):
            if not point.startswith(self.scratch):
                mount(point, self.root + point, None, MS_BIND | MS_REC)
        for point, hold in held:
            mount(hold, self.root + point, None, MS_MOVE)
        self.layers[directory] = "overlay"
        self.ours.append(directory)

    def ensure(self, target: str, is_file: bool) -> str:
        """The host path of container path ``target`` under the root, created (as a file or a directory)
        where it does not exist yet."""
        host = resolve_in_root(self.root, target)
        if os.path.lexists(host):
            return host
        container_path = host[len(self.root) :] or "/"
        ancestor = os.path.dirname(container_path)
        while not os.path.isdir(self.root + ancestor):
            ancestor = os.path.dirname(ancestor)
        if self.layers[self._layer_of(ancestor)] == "host":
            self._shadow(ancestor)  # "volume", "overlay" and "mask" layers are the pod's own: create there
        os.makedirs(os.path.dirname(host), exist_ok=True)
        if is_file:
            with open(host, "a", encoding="utf-8"):
                pass
        else:
            os.makedirs(host, exist_ok=True)
        return host

    def expose(self, path: str) -> None:
        """An image path (the interpreter under root's 0700 home): each ancestor that others may not search
        is masked by an empty tmpfs (0755), in which only what the image map exposes is mounted."""
        current = ""
        for part in [p for p in path.split("/") if p][:-1]:
            current += "/" + part
            host = resolve_in_root(self.root, current)
            if not os.path.isdir(host) or self.layers.get(host[len(self.root) :] or "/") == "mask":
                continue
            if os.stat(host).st_mode & 0o001 == 0:
                mount("tmpfs", host, "tmpfs", 0, "mode=755,size=1m")
                self.layers[host[len(self.root) :] or "/"] = "mask"
                self.ours.append(host[len(self.root) :] or "/")

    def bind(self, source: str, target: str, read_only: bool, create_source: bool) -> None:
        if create_source and not os.path.exists(source):
            os.makedirs(source, mode=0o777, exist_ok=True)
        if not os.path.exists(source):
            raise SetupError(f"mount source {source} for {target} does not exist")
        is_file = not os.path.isdir(source)
        host = self.ensure(target, is_file)
        if is_file == os.path.isdir(host):
            kind = "a file" if is_file else "a directory"
            raise SetupError(f"cannot mount {kind} on {target}: it is not {kind} in the container")
        mount(source, host, None, MS_BIND | MS_REC)
        if read_only:
            mount(None, host, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        container_path = host[len(self.root) :] or "/"
        self.layers[container_path] = "volume" if source.startswith(self.pod_dir) else "host"
        self.ours.append(container_path)

    def _ours(self, path: str) -> bool:
        """Whether writing container path ``path`` stays in a layer of ours (never on the host)."""
        return self.layers[self._layer_of(path)] in ("overlay", "mask")

    def finish(self) -> None:
        hostname = self.plan.get("hostname") or ""
        etc = self.root + "/etc"
        if hostname and os.path.isdir(etc) and not os.path.islink(etc):
            if self.layers[self._layer_of("/etc")] == "host" and "/etc" not in self.layers:
                self._shadow("/etc")
            if self._ours("/etc/hosts") and self._ours("/etc/hostname"):
                with open(etc + "/hostname", "w", encoding="utf-8") as handle:
                    handle.write(hostname + "\n")
                hosts = ""
                if os.path.exists(etc + "/hosts"):
                    with open(etc + "/hosts", encoding="utf-8") as handle:
                        hosts = handle.read()
                with open(etc + "/hosts", "w", encoding="utf-8") as handle:
                    handle.write(hosts.rstrip("\n") + f"\n# the pod (node agent)\n127.0.0.1\t{hostname}\n")
        cwd = self.plan.get("cwd") or "/"
        if not os.path.isdir(resolve_in_root(self.root, cwd)):
            self.ensure(cwd, False)
        if self.plan.get("readOnlyRoot"):
            for path in [self.root, *self.root_shadows]:
                mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def enter_namespaces(plan: dict[str, Any]) -> None:
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    hostname = (plan.get("hostname") or "")[:63]
    if hostname:
        encoded = hostname.encode()
        _check(_libc.sethostname(encoded, len(encoded)), "sethostname")


def setup_root(plan: dict[str, Any]) -> str:
    """Build the container's root (the shim stays outside it: its files are host paths); returns it."""
    builder = RootBuilder(plan)
    builder.build()
    for path in plan.get("imagePaths") or []:
        builder.expose(path)
        builder.bind(path, path, True, False)
    for entry in plan.get("mounts") or []:
        builder.bind(
            entry["source"], entry["target"], bool(entry.get("readOnly")), bool(entry.get("createSource"))
        )
    builder.finish()
    return builder.root


def become_user(plan: dict[str, Any]) -> None:
    """no_new_privs, then groups, gid, uid: the order that leaves no privilege behind."""
    if plan.get("noNewPrivs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.setgroups([int(g) for g in plan.get("groups") or []])
    os.setgid(int(plan.get("gid", 0)))
    os.setuid(int(plan.get("uid", 0)))


def _reset_signals() -> None:
    for number in (
        signal.SIGPIPE,
        signal.SIGXFSZ,
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGCHLD,
    ):
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _exec_error(argv: list[str], exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f'exec: "{argv[0]}": executable file not found in $PATH'
    if isinstance(exc, PermissionError):
        return f'exec: "{argv[0]}": permission denied'
    return f'exec: "{argv[0]}": {exc.strerror or exc}'


def exec_container(plan: dict[str, Any], root: str, report_fd: int | None) -> None:
    """In the forked child: chroot, drop privileges, chdir, exec. Never returns."""
    argv = [str(a) for a in plan["argv"]]
    try:
        _reset_signals()
        os.chroot(root)
        os.chdir("/")
        become_user(plan)
        os.umask(0o022)
        cwd = plan.get("cwd") or "/"
        try:
            os.chdir(cwd)
        except OSError as exc:
            raise SetupError(f"chdir to cwd ({cwd!r}) set in config.json failed: {exc.strerror}") from None
        if not argv:
            raise SetupError("no command specified: neither the container's command nor the image's argv")
        env = {str(k): str(v) for k, v in (plan.get("env") or {}).items()}
        try:
            if "/" in argv[0]:
                os.execve(argv[0], argv, env)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            raise SetupError(_exec_error(argv, exc)) from None
    except BaseException as exc:  # noqa: BLE001 - whatever went wrong must reach the shim, then exit
        message = str(exc) or type(exc).__name__
        if report_fd is not None:
            os.write(report_fd, message.encode("utf-8", "replace")[:4000])
        else:
            sys.stderr.write(message + "\n")
        os._exit(127)


def _write_json(path: str, data: dict[str, Any]) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(temporary, path)


def _proc_start_time(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
        return handle.read().rsplit(")", 1)[1].split()[19]


def _children(of: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                if int(handle.read().rsplit(")", 1)[1].split()[1]) == of:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _reap_leftovers(group: int) -> None:
    """Kill what the container left running (a container's processes die with it) and reap it all."""
    me = os.getpid()
    for _ in range(100):
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        children = _children(me)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not children:
            return
        time.sleep(0.02)


def _agent_gone(plan: dict[str, Any]) -> float:
    """Seconds since the node agent last touched its heartbeat file (0 when there is none to watch)."""
    heartbeat = plan.get("heartbeatFile")
    if not heartbeat:
        return 0.0
    try:
        return max(0.0, time.time() - os.stat(heartbeat).st_mtime)
    except FileNotFoundError:
        return float("inf")


def _wait_for(child: int, plan: dict[str, Any]) -> int:
    """Reap children until ``child`` ends; returns its wait status. A container whose node agent has been
    gone longer than ``orphanSeconds`` is killed: a restarted agent adopts its containers well within that,
    and a sandbox whose agent died with its test run leaves nothing running behind."""
    orphan_seconds = float(plan.get("orphanSeconds") or 0)
    next_check = time.monotonic() + 5.0
    while True:
        pid, wait_status = os.waitpid(-1, os.WNOHANG)
        if pid == child:
            return wait_status
        if pid != 0:
            continue
        if orphan_seconds and time.monotonic() >= next_check:
            next_check = time.monotonic() + 5.0
            gone = _agent_gone(plan)
            if gone > orphan_seconds:
                sys.stderr.write(f"node agent gone for {gone:.0f} s: killing the container\n")
                for target in (-child, child):
                    try:
                        os.kill(target, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        time.sleep(0.05)


def run(plan: dict[str, Any]) -> int:
    status_file, pid_file = plan["statusFile"], plan["pidFile"]
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)  # the agent signals the container, never its shim
    try:
        enter_namespaces(plan)
        root = setup_root(plan)
    except (SetupError, OSError) as exc:
        _write_json(
            status_file, {"startError": f"failed to create the container: {exc}", "finishedAt": time.time()}
        )
        return 0
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(CHILD_SUBREAPER)")
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setpgid(0, 0)
        exec_container(plan, root, write_end)
    os.close(write_end)
    try:
        os.setpgid(child, child)
    except OSError:
        pass  # the child already did it (or already exec'd): either way it leads its group
    failure = b""
    while True:
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        failure += chunk
    os.close(read_end)
    started = time.time()
    if not failure:
        _write_json(pid_file, {"pid": child, "startTime": _proc_start_time(child), "startedAt": started})
    wait_status = _wait_for(child, plan)
    finished = time.time()
    _reap_leftovers(child)
    if failure:
        _write_json(status_file, {"startError": failure.decode("utf-8", "replace"), "finishedAt": finished})
        return 0
    if os.WIFSIGNALED(wait_status):
        code, sig = 128 + os.WTERMSIG(wait_status), os.WTERMSIG(wait_status)
    else:
        code, sig = os.WEXITSTATUS(wait_status), None
    _write_json(status_file, {"exitCode": code, "signal": sig, "startedAt": started, "finishedAt": finished})
    return 0


def exec_in(plan: dict[str, Any]) -> int:
    """Run ``argv`` inside the running container ``pid`` (its mount and UTS namespaces, its user)."""
    pid = int(plan["pid"])
    for kind in ("mnt", "uts"):
        fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
        try:
            _check(_libc.setns(fd, 0), f"setns {kind}")
        finally:
            os.close(fd)
    exec_container(plan, f"/proc/{pid}/root", None)
    return 127


def main(args: list[str]) -> int:
    if len(args) != 2 or args[0] not in ("run", "exec"):
        sys.stderr.write("usage: launch.py run|exec PLAN.json\n")
        return 2
    with open(args[1], encoding="utf-8") as handle:
        plan = json.load(handle)
    return run(plan) if args[0] == "run" else exec_in(plan)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
