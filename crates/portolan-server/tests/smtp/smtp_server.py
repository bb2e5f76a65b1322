"""A real SMTP server (aiosmtpd) for the e-mail tests, on a free loopback port.

It prints {"port": N} once it listens, then each message it accepts as one JSON line (sender,
recipients, the login it was given, the message as sent). It refuses the first REFUSE recipients
with 451 (a temporary failure, to be retried) and takes AUTH PLAIN or LOGIN for one user over
plain text (loopback only). It stops when its standard input closes.

Usage: smtp_server.py [REFUSE]
"""

import json
import socket
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = b"portolan", b"mail secret"


class Handler:
    def __init__(self, refuse):
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        message = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "login": login,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        print(json.dumps(message), flush=True)
        return "250 Message accepted for delivery"


def authenticate(server, session, envelope, mechanism, auth_data):
    good = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (USER, PASSWORD)
    return AuthResult(success=good, handled=False, auth_data=auth_data if good else None)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    refuse = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    port = free_port()
    controller = Controller(
        Handler(refuse),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    print(json.dumps({"port": port}), flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
