"""HTTPS for the classroom: a self-signed certificate made on the spot, and a TLS front that ends TLS.

Browsers give a page the microphone only in a *secure context*: ``https://``, or ``http://`` on
``localhost``/``127.0.0.1``. A phone in a classroom reaches the instructor's laptop at a LAN address,
so the voice mode needs HTTPS there. There is no public name to get a real certificate for, so
:func:`self_signed` makes one for this laptop's addresses (with the ``cryptography`` package): the
students' browsers warn once ("not private"), the student accepts it, and the page is secure. The
certificate's SHA-256 fingerprint is printed so that a careful student can compare it with what
the browser shows.

:class:`TLSFront` is the adapter: it accepts TLS on the classroom's address and relays the
decrypted bytes to a plain-TCP target on 127.0.0.1 (the network emulator, then the lab server).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Certificate", "self_signed", "TLSFront", "https_banner"]


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path = field(repr=False)
    fingerprint: str              # SHA-256 of the DER certificate, AB:CD:… as browsers show it
    spki_sha256: str              # base64 SHA-256 of the public key (Chromium's --ignore-certificate-errors-spki-list)
    names: tuple[str, ...]

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


def self_signed(hosts: list[str], *, days: int = 30, directory: str | Path | None = None) -> Certificate:
    """A fresh key and self-signed certificate valid for ``hosts`` (IP addresses or names) and loopback.

    Written to ``directory`` (default: a new private temporary folder); the key file is readable by
    its owner only, and never printed.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names = list(dict.fromkeys([*hosts, "127.0.0.1", "localhost", socket.gethostname()]))
    alt = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Realtime AI Lab (self-signed)")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="labkit-tls-"))
    cert_path, key_path = folder / "classroom.crt", folder / "classroom.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Certificate(cert_path, key_path, ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest()),
                       base64.b64encode(hashlib.sha256(spki).digest()).decode(), tuple(names))


class TLSFront:
    """``async with TLSFront(target_port, certificate, host, port)``: TLS in, plain TCP to 127.0.0.1:target_port."""

    def __init__(self, target_port: int, certificate: Certificate, *, host: str = "127.0.0.1", port: int = 0):
        self.target_port, self.certificate, self.host, self.port = target_port, certificate, host, port
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> "TLSFront":
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  ssl=self.certificate.server_context(), ssl_handshake_timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(asyncio.current_task())
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))
            self._tasks.discard(asyncio.current_task())

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def https_banner(certificate: Certificate) -> list[str]:
    """What students will see on opening the https link, and what to tap (printed by the classroom)."""
    return ["HTTPS with a self-signed certificate made just now (browsers give a page the microphone only",
            "  over https, or on localhost). Students will see a warning once, then the page works:",
            "  - Chrome / Android: \"Your connection is not private\" -> tap Advanced -> Proceed to the address (unsafe)",
            "  - Safari / iPhone: \"This Connection Is Not Private\" -> Show Details -> visit this website -> Visit",
            "  - Firefox: \"Warning: Potential Security Risk Ahead\" -> Advanced... -> Accept the Risk and Continue",
            "  then allow the microphone when the page asks (Voice -> Start talking).",
            f"  Certificate SHA-256 (the browser shows it under the certificate's details): {certificate.fingerprint}"]
