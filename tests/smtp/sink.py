"""A real local SMTP server for tests/email_calls.rs (Debian python3-aiosmtpd).

    python3 sink.py PORT FOLDER

Listens on 127.0.0.1:PORT (plain SMTP) and writes each message it accepts
to FOLDER/NNNN.eml (the envelope recipients on an `X-Rcpt-To:` first line).
A recipient whose local part starts with `bounce` is refused with
`550 5.1.1 mailbox unavailable`, as a real relay refuses a bad address.
With SINK_USER and SINK_PASSWORD in its environment it requires AUTH
(PLAIN or LOGIN, allowed without TLS on loopback) with those credentials.
Prints `ready` once it listens; stops on SIGTERM.
"""

import logging
import os
import signal
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
            return AuthResult(success=ok)

        auth = dict(
            authenticator=authenticator, auth_required=True, auth_require_tls=False
        )
    controller = Controller(Sink(folder), hostname="127.0.0.1", port=port, **auth)
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
