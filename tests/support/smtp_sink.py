"""A real SMTP server for tocsin's tests (aiosmtpd), recording every
message it accepts, decoded, as one JSON line:
{"from", "to", "subject", "message_id", "text", "html"}.

usage: smtp_sink.py PORT OUTFILE [USER PASSWORD]

With USER and PASSWORD, AUTH (PLAIN/LOGIN) is required and other
credentials are refused with 535. Prints "ready" once listening.
"""
import email
import email.policy
import json
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Recorder:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "subject": str(msg["subject"]),
                "message_id": str(msg["message-id"]),
                "text": text.get_content() if text else "",
                "html": html.get_content() if html else "",
            }) + "\n")
        return "250 OK"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    creds = sys.argv[3:5] if len(sys.argv) >= 5 else None

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = creds is not None and auth_data.login.decode() == creds[0] and auth_data.password.decode() == creds[1]
        return AuthResult(success=ok, handled=False)

    kwargs = {}
    if creds:
        kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    controller = Controller(Recorder(out), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
