"""Reaching Ray for ``--ray``: a private instance on loopback, or a cluster at an address, within a deadline.

Three things Ray does on its own that an operator does not expect, and what autosep does about them:

- Ray rewrites a loopback address (``127.0.0.1``, ``localhost``, ``::1``) to the machine's external address on
  Linux, both for the node it starts and for the address it connects to. A private instance would then listen on
  every interface, and a cluster started on loopback could not be reached at ``127.0.0.1:PORT`` at all. For a
  loopback address autosep turns that rewrite off while Ray starts or connects (``ENABLE_RAY_CLUSTER``, the
  switch behind ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``), so no environment variable is needed.
- ``ray.init`` retries an address that does not answer for ever. autosep first resolves the address and knocks
  on its port until ``--ray-timeout``, then gives ``ray.init`` what is left of that time.
- ``ray.init`` replaces the SIGTERM handler (its own exits with status 15). The handlers in place before are put
  back, so Ctrl-C and SIGTERM stop a ``--ray`` run as they stop a local one (exit 130 / 143, with the summary).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

from ..errors import AutosepError, SettingsError
from .settings import RAY_INSTALL_HINT, RaySettings, ray_client_refusal

LOCAL = "local"  # --ray without an address: start a Ray instance on this machine
LOOPBACK_IP = "127.0.0.1"
_QUIET = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)


class RayUsageError(SettingsError):
    """``--ray`` cannot be used as asked (Ray missing, a pool no node can hold): a usage error, exit 2."""


class RayConnectError(AutosepError):
    """The Ray cluster at the address given could not be reached in time (exit 1)."""


def import_ray():
    """Ray, or a usage error with the install command (Ray is an optional extra)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never report usage from a user's batch
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUsageError(f"--ray needs Ray, which is not installed here: {RAY_INSTALL_HINT}") from None
    return ray


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``ray://`` stripped; an IPv6 host in brackets) as (host, port)."""
    bare = address.split("://", 1)[-1]
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise RayConnectError(f"--ray {address}: not HOST:PORT")
    return host.strip("[]"), int(port)


def resolve_address(address: str) -> str:
    """The address ``auto`` stands for (``RAY_ADDRESS``, else the cluster ``ray start`` began on this machine);
    any other address as it is."""
    if address != "auto":
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    from ray._private import services

    try:
        found = services.get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise RayConnectError("--ray auto: no Ray cluster found on this machine (RAY_ADDRESS is not set and no "
                              "`ray start` is running here); start one (ray start --head) or pass its address, "
                              "e.g. --ray HEAD_IP:6379")
    return found


@contextlib.contextmanager
def loopback_kept(ray, keep: bool) -> Iterator[None]:
    """While Ray starts or connects: no rewriting of a loopback address to the external one (when ``keep``)."""
    constants = ray._private.ray_constants
    saved = constants.ENABLE_RAY_CLUSTER
    if keep:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def signal_handlers_kept() -> Iterator[None]:
    """Put back the SIGINT/SIGTERM handlers that were in place before (``ray.init`` installs its own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


class _Deadline(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_Deadline` in the main thread after ``seconds`` (a no-op off the main thread, where no
    signal can be delivered: there the port check alone bounds the wait)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _Deadline

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def wait_for_port(address: str, host: str, port: int, until: float) -> None:
    """Knock on ``host:port`` until it accepts a connection or ``until`` (a monotonic time) passes."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RayConnectError(f"--ray {address}: unknown host {host} ({exc.strerror}); check the head node's "
                              "name or IP address") from None
    reason = "no answer"
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(2.0, until - time.monotonic()))):
                return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        if time.monotonic() >= until:
            raise RayConnectError(_unreachable(address, f"nothing answered at {host}:{port} ({reason})"))
        time.sleep(min(0.25, max(0.0, until - time.monotonic())))


def last_line(exc: BaseException) -> str:
    """The last non-blank line of ``exc``'s message (Ray's errors end with the cause), else its type's name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _unreachable(address: str, what: str) -> str:
    return (f"could not reach the Ray cluster at {address}: {what}; check that the cluster is running there "
            "(`ray status` on the head node), that the address and port are the head's GCS port (6379 unless "
            "ray start --port said otherwise) or ray://HEAD:10001 for the Ray client, and that no firewall is in the "
            "way; --ray-timeout sets how long to wait")


def connect(ray, settings: RaySettings) -> bool:
    """Join the cluster ``settings.address`` names, or start a private instance on loopback; True when this call
    started or joined Ray (it then shuts it down at the end). A Ray session that is already initialised (a
    notebook, a test module) is reused as it is.

    Raises RayConnectError when the address does not answer within ``settings.timeout_s`` seconds.
    """
    if ray.is_initialized():
        return False
    if settings.address == LOCAL:
        start_private_instance(ray)
        return True
    until = time.monotonic() + settings.timeout_s
    address = resolve_address(settings.address)
    refusal = ray_client_refusal(address)  # RAY_ADDRESS may say ray:// where --ray said auto
    if refusal:
        raise RayUsageError(refusal, "--ray")
    host, port = split_address(address)
    wait_for_port(address, host, port, until)
    try:
        with signal_handlers_kept(), loopback_kept(ray, is_loopback(host)), \
                deadline(until - time.monotonic()):
            ray.init(address=address, **_QUIET)
    except _Deadline:
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise RayConnectError(_unreachable(address, f"{host}:{port} accepts connections but Ray did not answer "
                                                    f"within {settings.timeout_s:g} s")) from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayConnectError(_unreachable(address, last_line(exc))) from None
    return True


def start_private_instance(ray, **options) -> None:
    """A Ray instance on this machine whose every process listens on 127.0.0.1 only (``options``: more
    ``ray.init`` arguments, e.g. ``num_cpus``)."""
    with signal_handlers_kept(), loopback_kept(ray, True):
        ray.init(_node_ip_address=LOOPBACK_IP, **{**_QUIET, **options})
