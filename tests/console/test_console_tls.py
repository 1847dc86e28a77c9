"""The console's session cookie is ``Secure`` whenever the browser's request came over TLS:
``samops run`` serving HTTPS itself (``--tls-cert``, ``--tls-key``), or behind a proxy that ends
TLS and says so (``X-Forwarded-Proto``, ``Forwarded``). TLS files that cannot serve are a
usage error before anything starts."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import GitRepo
from tests.console.conftest import Console, Keys, start_console
from tests.daemon.conftest import SAMOPS, DaemonProcess, wait_for
from tests.tls import self_signed


def test_served_over_tls_the_console_cookie_is_secure(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo, keys: Keys, tmp_path: Path
) -> None:
    tls = self_signed(tmp_path / "tls")
    env = {"SAMOPS_TLS_CERT": str(tls.cert), "SAMOPS_TLS_KEY": str(tls.key)}
    console = start_console(start_daemon, repo, keys, env=env, tls=tls.client)
    daemon = console.daemon
    assert daemon.base.startswith("https://")

    client = console.client()
    assert client.sign_in(keys.admin)["role"] == "admin"
    cookie = client.last_headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.call("GET", "/console/api/overview")[0] == 200  # the cookie goes back
    assert "serving on https://127.0.0.1:" in daemon.log.read_text()

    with pytest.raises(http.client.RemoteDisconnected):  # plain HTTP gets no answer
        DaemonProcess.request(_plain(daemon), "GET", "/healthz")


def _plain(daemon: DaemonProcess) -> DaemonProcess:
    """The same process, asked over plain HTTP."""
    plain = object.__new__(DaemonProcess)
    plain.base, plain.tls = daemon.base.replace("https://", "http://"), None
    return plain


def served_serial(port: int) -> int:
    """The serial number of the certificate a new TLS connection to ``port`` is shown."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def serial_of(cert: Path) -> int:
    return int(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)


def test_a_renewed_certificate_is_served_without_a_restart(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo, keys: Keys, tmp_path: Path
) -> None:
    first, renewed = self_signed(tmp_path / "first"), self_signed(tmp_path / "renewed")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"

    def install(cert_text: bytes, key_text: bytes) -> None:  # as cert-manager does: renamed in
        for target, text in ((key, key_text), (cert, cert_text)):
            target.with_suffix(".new").write_bytes(text)
            os.replace(target.with_suffix(".new"), target)

    install(first.cert.read_bytes(), first.key.read_bytes())
    env = {
        "SAMOPS_TLS_CERT": str(cert),
        "SAMOPS_TLS_KEY": str(key),
        "SAMOPS_TLS_RELOAD_INTERVAL": "0.2",
    }
    console = start_console(start_daemon, repo, keys, env=env, tls=first.client)
    port = console.daemon.port
    assert served_serial(port) == serial_of(first.cert)

    install(renewed.cert.read_bytes(), renewed.key.read_bytes())
    wait_for(lambda: served_serial(port) == serial_of(renewed.cert), what="the renewed cert")
    assert "TLS: certificate reloaded" in console.daemon.log.read_text()

    install(b"not a certificate", b"not a key")  # a broken renewal: the one in use stays
    wait_for(
        lambda: "serving the certificate in use" in console.daemon.log.read_text(),
        what="the broken renewal told",
    )
    assert served_serial(port) == serial_of(renewed.cert)
    assert "not a key" not in console.daemon.log.read_text()


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-Proto": "https"},
        {"Forwarded": 'for=192.0.2.60;proto="https";by=203.0.113.43'},
    ],
    ids=["x-forwarded-proto", "forwarded"],
)
def test_behind_a_proxy_that_ends_tls_the_cookie_is_secure(
    console: Console, header: dict[str, str]
) -> None:
    client = console.client()
    client.sign_in(console.keys.admin, headers=header)
    assert "Secure" in client.last_headers["Set-Cookie"]
    client.sign_in(console.keys.admin, headers={"X-Forwarded-Proto": "http"})
    assert "Secure" not in client.last_headers["Set-Cookie"]


def test_tls_files_that_cannot_serve_are_a_usage_error(tmp_path: Path) -> None:
    good = self_signed(tmp_path / "good")
    locked = self_signed(tmp_path / "locked", password=b"a passphrase")
    other = self_signed(tmp_path / "other")
    cases = {
        "go together": ["--tls-cert", str(good.cert)],
        "cannot read it: No such file": ["--tls-cert", "/nowhere.pem", "--tls-key", str(good.key)],
        "the key is encrypted": ["--tls-cert", str(locked.cert), "--tls-key", str(locked.key)],
        "the private key that matches it": [
            "--tls-cert",
            str(good.cert),
            "--tls-key",
            str(other.key),
        ],
    }
    for expected, args in cases.items():
        done = subprocess.run(
            [str(SAMOPS), "serve", *args, "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ | {"SAMOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}"},
        )
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert "PRIVATE KEY" not in done.stderr
    assert not (tmp_path / "never.db").exists()  # nothing started
