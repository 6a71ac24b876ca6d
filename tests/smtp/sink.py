"""A real local SMTP server for tests/email_calls.rs (Debian python3-aiosmtpd).

    python3 sink.py PORT FOLDER

Listens on 127.0.0.1:PORT (plain SMTP) and writes each message it accepts
to FOLDER/NNNN.eml (the envelope recipients on an `X-Rcpt-To:` first line).
A recipient whose local part starts with `bounce` is refused with
`550 5.1.1 mailbox unavailable`, as a real relay refuses a bad address.
With SINK_USER and SINK_PASSWORD in its environment it requires AUTH
(PLAIN or LOGIN, allowed without TLS on loopback) with those credentials.
With SINK_TLS=starttls (STARTTLS required before AUTH and mail) or
SINK_TLS=implicit (TLS from the first byte, SMTPS) it serves the certificate
chain SINK_CERT with key SINK_KEY (PEM files); each message then also says
how it came: `X-Tls: <TLS version>` and `X-Auth: <login>` after X-Rcpt-To.
Prints `ready` once it listens; stops on SIGTERM.
"""

import logging
import os
import signal
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].lower().startswith("bounce"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        tmp = os.path.join(self.folder, f".{n:04}.tmp")
        with open(tmp, "wb") as f:
            f.write(("X-Rcpt-To: " + ", ".join(envelope.rcpt_tos) + "\r\n").encode())
            if os.environ.get("SINK_TLS"):
                tls = server.transport.get_extra_info("ssl_object")
                login = session.auth_data.login.decode() if session.auth_data else "-"
                version = tls.version() if tls else "none"
                f.write(f"X-Tls: {version}\r\nX-Auth: {login}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.folder, f"{n:04}.eml"))
        return "250 Message accepted for delivery"


def main():
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    port, folder = int(sys.argv[1]), sys.argv[2]
    os.makedirs(folder, exist_ok=True)
    user, password = os.environ.get("SINK_USER"), os.environ.get("SINK_PASSWORD")
    auth = {}
    if user and password:
        def authenticator(server, session, envelope, mechanism, data):
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == user
                and data.password.decode() == password
            )
            # handled=False: aiosmtpd answers a failure with 535 itself.
            return AuthResult(success=ok, handled=False, auth_data=data)

        auth = dict(
            authenticator=authenticator, auth_required=True, auth_require_tls=False
        )
    mode = os.environ.get("SINK_TLS")
    if mode:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.environ["SINK_CERT"], os.environ["SINK_KEY"])
        if mode == "starttls":
            auth.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
        elif mode == "implicit":
            # The whole connection is TLS: aiosmtpd's auth_require_tls only
            # knows STARTTLS, so it is off here.
            auth.update(ssl_context=ctx, auth_require_tls=False)
        else:
            sys.exit(f"SINK_TLS: {mode}?")
    controller = Controller(Sink(folder), hostname="127.0.0.1", port=port, **auth)
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
