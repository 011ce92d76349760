"""Where the daemon is and how to reach it: the same rules as the C++ SDK.

The target, in order: an explicit `target` ("127.0.0.1:7070", "unix:/path"), else the
unix socket `socket`, else $TASKRT_TARGET, else $TASKRT_SOCKET, else
$XDG_RUNTIME_DIR/taskrt/taskrt.sock, else /tmp/taskrt-<uid>/taskrt.sock, and the system
service's /run/taskrt/taskrt.sock when the per-user socket does not exist and
TASKRT_SOCKET is unset.

A unix socket needs no credentials (the daemon reads the caller's uid from it); before
using one, the socket and its directory are checked the way the C++ SDK checks them
(owned by the caller or root, or the service's user for /run/taskrt; the directory not
writable by others unless sticky), so that tasks never go to a process impersonating
taskrtd. A TCP target needs the daemon's token (`token`, `token_file`, $TASKRT_TOKEN,
$TASKRT_TOKEN_FILE), sent as "authorization: Bearer ..." on every call, and only to a
loopback host unless TLS is on.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass

SYSTEM_SOCKET = "/run/taskrt/taskrt.sock"
# The daemon accepts inputs up to 16 MiB (+ the rest of a request); results as large.
MAX_MESSAGE_BYTES = 64 << 20


class ConnectionSetupError(ValueError):
    """A target, token or socket that must not be used (raised before any call)."""


def per_user_socket() -> str:
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        return os.path.join(xdg, "taskrt", "taskrt.sock")
    return "/tmp/taskrt-%d/taskrt.sock" % os.getuid()


def default_socket() -> str:
    env = os.environ.get("TASKRT_SOCKET", "")
    return env if env else per_user_socket()


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def resolve_target(target: str | None = None, socket: str | None = None) -> str:
    """The gRPC target string: "unix:/path" or "host:port" (or any gRPC target)."""
    if target:
        return target
    if socket:
        return "unix:" + socket
    env_target = os.environ.get("TASKRT_TARGET", "")
    if env_target:
        return env_target
    path = default_socket()
    if not _is_socket(path) and not os.environ.get("TASKRT_SOCKET") and _is_socket(SYSTEM_SOCKET):
        path = SYSTEM_SOCKET
    return "unix:" + path


def unix_path_of(target: str) -> str | None:
    for prefix in ("unix://", "unix:"):
        if target.startswith(prefix):
            return target[len(prefix):]
    return None


def _check_owned(path: str, what: str, allowed: set[int], follow: bool) -> os.stat_result:
    st = os.stat(path) if follow else os.lstat(path)
    if st.st_uid not in allowed:
        raise ConnectionSetupError(
            "refusing %s %s: it belongs to uid %d, not to you (uid %d) or root, so another "
            "user may have put it there to impersonate taskrtd; remove it (or point "
            "TASKRT_SOCKET at your daemon's socket)" % (what, path, st.st_uid, os.geteuid()))
    return st


def check_socket_owner(path: str) -> None:
    """Raises ConnectionSetupError for a socket someone else may have put in place."""
    allowed = {os.geteuid(), 0}
    directory = os.path.dirname(os.path.abspath(path)) or "/"
    if os.path.abspath(path) == SYSTEM_SOCKET:
        try:
            allowed.add(os.stat(os.path.dirname(SYSTEM_SOCKET)).st_uid)
        except OSError:
            pass
    try:
        if os.path.islink(directory):
            _check_owned(directory, "the link", allowed, follow=False)
        st = _check_owned(directory, "the socket directory", allowed, follow=True)
    except FileNotFoundError:
        return  # nothing there: the connection fails with "not running"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise ConnectionSetupError(
            "refusing the socket directory %s: other users may write to it (mode %o), so the "
            "socket in it may not be taskrtd's; `chmod go-w %s` or use another directory"
            % (directory, stat.S_IMODE(st.st_mode), directory))
    try:
        if os.path.islink(path):
            _check_owned(path, "the link", allowed, follow=False)
        _check_owned(path, "the socket", allowed, follow=True)
    except FileNotFoundError:
        return


def read_token_file(path: str, what: str | None = None) -> str:
    what = what or path
    try:
        st = os.stat(path)
        with open(path, "r", encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise ConnectionSetupError("cannot read the token file %s: %s" % (what, e.strerror)) from e
    if st.st_mode & 0o077:
        raise ConnectionSetupError(
            "the token file %s is readable by group or others (mode %o): `chmod 600 %s`"
            % (what, stat.S_IMODE(st.st_mode), path))
    if not token or any(c.isspace() for c in token):
        raise ConnectionSetupError("the token file %s holds no token (one word expected)" % what)
    return token


def _checked_token(token: str, what: str) -> str:
    if any(c.isspace() for c in token) or not token.isprintable():
        raise ConnectionSetupError("%s is not a token (one word of printable characters "
                                   "expected)" % what)
    return token


def find_token_and_source(token: str | None,
                          token_file: str | None) -> tuple[str | None, str]:
    """The token by the C++ SDK's precedence, and where it came from (for messages)."""
    if token:
        return _checked_token(token, "token="), "token="
    if token_file:
        return read_token_file(token_file), "the token file " + token_file
    env = os.environ.get("TASKRT_TOKEN", "")
    if env:
        return _checked_token(env, "$TASKRT_TOKEN"), "$TASKRT_TOKEN"
    env_file = os.environ.get("TASKRT_TOKEN_FILE", "")
    if env_file:
        where = "$TASKRT_TOKEN_FILE (%s)" % env_file
        return read_token_file(env_file, where), where
    return None, ""


def find_token(token: str | None, token_file: str | None) -> str | None:
    return find_token_and_source(token, token_file)[0]


# Where the daemon keeps its token, for messages (the C++ SDK's words).
WHERE_THE_TOKEN_IS = (
    "the daemon's token is in <state-dir>/token (by default ~/.local/state/taskrt/token of "
    "the user running taskrtd, /var/lib/taskrt/token for the system service)")


def _read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConnectionSetupError("cannot read the %s %s: %s" % (what, path, e.strerror)) from e
    if not data:
        raise ConnectionSetupError("the %s %s is empty" % (what, path))
    return data


def _host_of(target: str) -> str:
    t = target
    for prefix in ("dns:///", "ipv4:", "ipv6:"):
        if t.startswith(prefix):
            t = t[len(prefix):]
    if t.startswith("["):
        return t[1:t.find("]")]
    return t.rsplit(":", 1)[0] if ":" in t else t


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Endpoint:
    """A resolved target with what its calls need."""
    target: str
    metadata: tuple  # (("authorization", "Bearer ..."),) for TCP, else ()
    credentials: object | None  # grpc.ChannelCredentials for TLS, else None
    options: tuple
    # For a TCP target: added to an UNAUTHENTICATED answer, says how to fix it.
    unauthenticated_hint: str = ""

    @property
    def is_unix(self) -> bool:
        return unix_path_of(self.target) is not None


def endpoint(target: str | None = None, *, socket: str | None = None, token: str | None = None,
             token_file: str | None = None, tls: bool | None = None,
             tls_ca_file: str | None = None, tls_cert_file: str | None = None,
             tls_key_file: str | None = None,
             tls_server_name: str | None = None) -> Endpoint:
    """Resolves where to connect and with what; raises ConnectionSetupError for what must
    not be used (a foreign socket, a token in clear text to a remote host, unreadable TLS
    files). tls_cert_file/tls_key_file: a client certificate for taskrtd --tls-client-ca."""
    import grpc  # here, so that taskrt._wire and the worker never need grpc

    resolved = resolve_target(target, socket)
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    path = unix_path_of(resolved)
    if path is not None:
        check_socket_owner(path)
        return Endpoint(resolved, (), None, tuple(options))
    ca = tls_ca_file or os.environ.get("TASKRT_TLS_CA") or None
    use_tls = bool(tls) or ca is not None or bool(tls_cert_file) or bool(tls_key_file)
    if bool(tls_cert_file) != bool(tls_key_file):
        raise ConnectionSetupError(
            "a TLS client certificate needs its key and the other way round: give both "
            "tls_cert_file and tls_key_file")
    bearer, source = find_token_and_source(token, token_file)
    if bearer is not None and not use_tls and not is_loopback(_host_of(resolved)):
        raise ConnectionSetupError(
            "refusing to send the token in clear text to %s, which is not a loopback "
            "address: turn on TLS (tls=True, tls_ca_file=...) or connect over the unix "
            "socket" % resolved)
    credentials = None
    if use_tls:
        root = _read_pem(ca, "TLS CA file") if ca is not None else None
        key = _read_pem(tls_key_file, "TLS key") if tls_key_file else None
        chain = _read_pem(tls_cert_file, "TLS certificate") if tls_cert_file else None
        credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                                   certificate_chain=chain)
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
    metadata = (("authorization", "Bearer " + bearer),) if bearer is not None else ()
    if bearer is None:
        hint = ("taskrtd at %s wants a token and none was sent: pass token= or token_file=, "
                "or set TASKRT_TOKEN or TASKRT_TOKEN_FILE; %s" % (resolved, WHERE_THE_TOKEN_IS))
    else:
        hint = "taskrtd at %s refused the token from %s: %s" % (resolved, source,
                                                               WHERE_THE_TOKEN_IS)
    return Endpoint(resolved, metadata, credentials, tuple(options), hint)


def not_running_message(target: str, timeout: float) -> str:
    """What to do when nothing answers at `target` (the C++ SDK's words)."""
    path = unix_path_of(target)
    if path is None:
        return ("taskrtd is not reachable at %s (no daemon answered within %gs): check that it "
                "is running and listens on that address" % (target, timeout))
    why = ("no daemon answered within %gs" % timeout) if _is_socket(path) else "no socket at " + path
    return ("taskrtd is not running at %s (%s): start it with `taskrtd` (or `systemctl start "
            "taskrtd`), or point TASKRT_SOCKET (or Client(socket=...)) at a running one"
            % (target, why))


def open_channel(ep: Endpoint):
    """A grpc.Channel to `ep` (not yet connected)."""
    import grpc
    if ep.credentials is not None:
        return grpc.secure_channel(ep.target, ep.credentials, options=ep.options)
    return grpc.insecure_channel(ep.target, options=ep.options)


def open_aio_channel(ep: Endpoint):
    """A grpc.aio.Channel to `ep` (create it inside the event loop that uses it)."""
    from grpc import aio
    if ep.credentials is not None:
        return aio.secure_channel(ep.target, ep.credentials, options=ep.options)
    return aio.insecure_channel(ep.target, options=ep.options)


# --- Cluster targets (docs/CLUSTER.md) ---------------------------------------------------

def _dns_host_port(target: str) -> tuple[str, str] | None:
    """(host, port) of "dns:///HOST:PORT" or "dns:HOST:PORT", else None."""
    for prefix in ("dns:///", "dns:"):
        if target.startswith(prefix):
            rest = target[len(prefix):]
            break
    else:
        return None
    if rest.startswith("//"):
        raise ConnectionSetupError("%s names a DNS authority, which taskrt does not use: write "
                                   "dns:///HOST:PORT" % target)
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ConnectionSetupError("%s is not dns:///HOST:PORT (a port is needed)" % target)
    return host, port


def is_cluster_target(target: str) -> bool:
    """A list of 2+ addresses after ipv4:/ipv6:, or a DNS name (dns:///HOST:PORT)."""
    for prefix in ("ipv4:", "ipv6:"):
        if target.startswith(prefix):
            return len([a for a in target[len(prefix):].split(",") if a]) >= 2
    return target.startswith("dns:")


def cluster_members(target: str) -> tuple[list[str], str | None]:
    """The member addresses ("host:port", "[v6]:port") of a cluster target and the DNS
    host (the TLS server name of a DNS target, else None). A DNS name is resolved now
    with the system resolver, one member per distinct address; ConnectionSetupError when
    it resolves to nothing."""
    import socket as _socket
    for prefix in ("ipv4:", "ipv6:"):
        if target.startswith(prefix):
            members: list[str] = []
            for address in target[len(prefix):].split(","):
                if address and address not in members:
                    members.append(address)
            return members, None
    dns = _dns_host_port(target)
    if dns is None:
        raise ConnectionSetupError("%s is not a cluster target" % target)
    host, port = dns
    try:
        infos = _socket.getaddrinfo(host, int(port), type=_socket.SOCK_STREAM)
    except OSError as e:
        raise ConnectionSetupError("cannot resolve %s (%s): %s" % (host, target, e)) from e
    members = []
    for family, _, _, _, sockaddr in infos:
        address = ("[%s]:%s" if family == _socket.AF_INET6 else "%s:%s") % (sockaddr[0], port)
        if address not in members:
            members.append(address)
    if not members:
        raise ConnectionSetupError("%s resolves to no address" % target)
    return members, host
