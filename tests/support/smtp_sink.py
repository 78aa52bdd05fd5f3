"""A real SMTP server for tocsin's tests (aiosmtpd), recording every
message it accepts, decoded, as one JSON line:
{"from", "to", "subject", "message_id", "text", "html", "tls", "tls_version"}
("tls": whether the session carrying the message was encrypted).

usage: smtp_sink.py PORT OUTFILE [USER PASSWORD] [--tls MODE CERT KEY]

With USER and PASSWORD, AUTH (PLAIN/LOGIN) is required and other
credentials are refused with 535. With --tls, CERT (PEM chain) and KEY
(PEM) are the server's; MODE is `starttls` (offered and required before
MAIL), `starttls-optional` (offered; mail in clear is accepted too, so a
client falling back to clear would be recorded with "tls": false) or
`implicit` (TLS from the first byte). Prints "ready" once listening.
"""
import email
import email.policy
import json
import ssl
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
        # The SSL transport after STARTTLS, or from the start (implicit).
        tls = server.transport.get_extra_info("ssl_object") if server.transport else None
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "subject": str(msg["subject"]),
                "message_id": str(msg["message-id"]),
                "text": text.get_content() if text else "",
                "html": html.get_content() if html else "",
                "tls": tls is not None,
                "tls_version": tls.version() if tls is not None else None,
            }) + "\n")
        return "250 OK"


def main():
    args = sys.argv[1:]
    tls = None
    if "--tls" in args:
        i = args.index("--tls")
        tls = args[i + 1:i + 4]
        del args[i:i + 4]
        if len(tls) != 3 or tls[0] not in ("starttls", "starttls-optional", "implicit"):
            sys.exit("--tls MODE CERT KEY: MODE is starttls, starttls-optional or implicit")
    port, out = int(args[0]), args[1]
    creds = args[2:4] if len(args) >= 4 else None

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = creds is not None and auth_data.login.decode() == creds[0] and auth_data.password.decode() == creds[1]
        return AuthResult(success=ok, handled=False)

    kwargs = {}
    if creds:
        kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    if tls:
        mode, cert, key = tls
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        if mode == "implicit":
            kwargs["ssl_context"] = ctx
        else:
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = mode == "starttls"
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
