"""A mail sender in Python, as a team would write one, for `maildrill drill --exec`.

Usage: python subject.py   (configured by the environment a drill hands it)

- Takes messages at `POST /messages` (JSON `{"message_id", "from", "to", "subject", "body"}`),
  appends each to a durable outbox in $MAILDRILL_STATE_DIR and answers 202; it prints
  `MAILDRILL_READY submit=URL` once it listens.
- A sender thread delivers the outbox in order: over SMTP (STARTTLS, AUTH XOAUTH2) when
  $MAILDRILL_TRANSPORT is `smtp`, else with Graph `sendMail`; a message leaves the outbox only
  once the server accepted it, so a restart resends what was not, and loses nothing.
- Tokens come from msal's ConfidentialClientApplication. When Entra refuses the credential
  (`invalid_client`, e.g. AADSTS7000222 for an expired secret), the client reads its secret
  file again and, if the value changed, builds a new msal app with it.
- Failures back off exponentially with jitter, capped at $MAILDRILL_BACKOFF_CAP; a Retry-After
  (from Graph or the token endpoint) is waited out in full.
- SIGTERM stops it: the sender finishes (or drops) the message in flight and it exits 0.

It prints what it does on standard error, never a secret or a token.
"""

import email.message
import email.utils
import json
import os
import random
import re
import signal
import smtplib
import ssl
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer

import msal
import requests

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SMTP_SCOPE = "https://outlook.office365.com/.default"
FIRST_WAIT_SECONDS = 0.5
NETWORK_TIMEOUT_SECONDS = 10
STOP_WITHIN_SECONDS = 2.0


def log(text):
    generation = os.environ.get("MAILDRILL_GENERATION", "?")
    print(f"subject[{generation}]: {text}", file=sys.stderr, flush=True)


def seconds(text, default):
    """A humantime duration as the drill writes them (`4s`, `5m`, `1m 30s`, `250ms`)."""
    if not text:
        return default
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\b", text):
        total += float(number) * units[unit]
    return total or default


def aadsts(text):
    """The first AADSTS code of an error text, without the rest (which names the app)."""
    found = re.search(r"AADSTS\d+", text or "")
    return found.group(0) if found else None


class Failure(Exception):
    """A delivery round that failed; retry after a backoff, at least `retry_after` seconds."""

    def __init__(self, what, retry_after=None):
        super().__init__(what)
        self.retry_after = retry_after


def retry_after(value):
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Outbox:
    """A JSON-lines file of messages not yet accepted by the server, in order."""

    def __init__(self, state_dir):
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, "outbox.jsonl")
        self.lock = threading.Lock()
        self.messages = []
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as file:
                for line in file:
                    try:
                        self.messages.append(json.loads(line))
                    except ValueError:
                        pass  # a line half-written when the process was killed
        self.rewrite()

    def append(self, message):
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(json.dumps(message) + "\n")
                file.flush()
                os.fsync(file.fileno())
            self.messages.append(message)

    def pending(self):
        with self.lock:
            return list(self.messages)

    def remove(self, message_id):
        with self.lock:
            self.messages = [m for m in self.messages if m["message_id"] != message_id]
            self.rewrite()

    def rewrite(self):
        temporary = f"{self.path}.new"
        with open(temporary, "w", encoding="utf-8") as file:
            file.writelines(json.dumps(m) + "\n" for m in self.messages)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)


class RecordingSession(requests.Session):
    """msal's HTTP client: trusts the drill's CA, and remembers the last Retry-After, which msal
    does not surface (a 429 from Entra reaches msal's caller as a JSON decode error)."""

    def __init__(self, ca_cert):
        super().__init__()
        self.verify = ca_cert
        self.trust_env = False  # else $REQUESTS_CA_BUNDLE would override `verify`
        self.last_retry_after = None

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", NETWORK_TIMEOUT_SECONDS)
        response = super().request(*args, **kwargs)
        self.last_retry_after = retry_after(response.headers.get("Retry-After"))
        return response


class Tokens:
    """Access tokens from msal for one scope, kept until `refresh_ahead` before they expire."""

    def __init__(self, env, scope):
        self.env = env
        self.scope = scope
        self.refresh_ahead = seconds(env.get("MAILDRILL_REFRESH_AHEAD"), 300)
        self.http = RecordingSession(env["MAILDRILL_CA_CERT"])
        self.secret = None
        self.app = None
        self.token, self.expires = None, 0.0
        self.load_secret()

    def load_secret(self):
        """Reads the secret file; a new msal app when the value changed. Whether it did."""
        path = self.env.get("MAILDRILL_CLIENT_SECRET_FILE")
        if path:
            with open(path, encoding="utf-8") as file:
                secret = file.read().strip()
        else:
            secret = self.env["MAILDRILL_CLIENT_SECRET"]
        if secret == self.secret:
            return False
        self.secret = secret
        self.app = msal.ConfidentialClientApplication(
            self.env["MAILDRILL_CLIENT_ID"],
            client_credential=secret,
            authority=self.env["MAILDRILL_AUTHORITY"],
            validate_authority=False,
            instance_discovery=False,
            http_client=self.http,
        )
        self.forget()
        return True

    def forget(self):
        self.token, self.expires = None, 0.0

    def get(self):
        if self.token and time.monotonic() < self.expires - self.refresh_ahead:
            return self.token
        result = self.request()
        if result.get("error") == "invalid_client" and self.load_secret():
            log(f"token refused ({describe(result)}); the secret file changed: trying its value")
            result = self.request()
        if "access_token" not in result:
            raise Failure(f"token refused ({describe(result)})", self.http.last_retry_after)
        self.token = result["access_token"]
        self.expires = time.monotonic() + float(result.get("expires_in", 0))
        return self.token

    def request(self):
        """msal's answer: from its cache or Entra's token endpoint."""
        self.http.last_retry_after = None
        try:
            return self.app.acquire_token_for_client(scopes=[self.scope])
        except Exception as error:  # e.g. msal reading Entra's plain-text 429 as JSON
            what = f"token request failed ({type(error).__name__})"
            raise Failure(what, self.http.last_retry_after)


def describe(result):
    """An msal error without its description's text (which names the app)."""
    return f"{result.get('error')} {aadsts(result.get('error_description')) or ''}".strip()


class Smtp:
    """Delivers over SMTP: STARTTLS, AUTH XOAUTH2, one connection per round."""

    def __init__(self, env):
        self.env = env
        self.tokens = Tokens(env, SMTP_SCOPE)
        self.context = ssl.create_default_context(cafile=env["MAILDRILL_CA_CERT"])

    def deliver(self, outbox, stopping):
        batch = outbox.pending()
        token = self.tokens.get()
        host, port = self.env["MAILDRILL_SMTP_HOST"], int(self.env["MAILDRILL_SMTP_PORT"])
        try:
            with smtplib.SMTP(host, port, timeout=NETWORK_TIMEOUT_SECONDS) as smtp:
                smtp.ehlo()
                smtp.starttls(context=self.context)
                smtp.ehlo()
                self.authenticate(smtp, token)
                for message in batch:
                    if stopping.is_set():
                        return
                    smtp.sendmail(message["from"], message["to"], mime(message))
                    outbox.remove(message["message_id"])
                    log(f"sent {message['message_id']} over SMTP")
        except smtplib.SMTPResponseException as error:
            raise Failure(f"SMTP {error.smtp_code} ({type(error).__name__})")
        except (smtplib.SMTPException, OSError) as error:
            raise Failure(f"SMTP failed ({type(error).__name__})")

    def authenticate(self, smtp, token):
        user = self.env["MAILDRILL_MAILBOX"]
        initial = f"user={user}\x01auth=Bearer {token}\x01\x01"
        try:
            # On a 334 challenge (the error JSON), XOAUTH2 answers an empty line.
            smtp.auth("XOAUTH2", lambda challenge=None: "" if challenge is not None else initial)
        except smtplib.SMTPAuthenticationError:
            self.tokens.forget()
            raise


def mime(message):
    """The message as bytes, its Message-ID the harness's, exactly."""
    mail = email.message.EmailMessage()
    mail["From"] = message["from"]
    mail["To"] = ", ".join(message["to"])
    mail["Subject"] = message["subject"]
    mail["Date"] = email.utils.formatdate(localtime=False)
    mail["Message-ID"] = message["message_id"]
    mail.set_content(message["body"])
    return mail.as_bytes()


class Graph:
    """Delivers with Graph sendMail, one request a message."""

    def __init__(self, env):
        self.env = env
        self.tokens = Tokens(env, GRAPH_SCOPE)
        self.http = requests.Session()
        self.http.verify = env["MAILDRILL_CA_CERT"]
        self.http.trust_env = False

    def deliver(self, outbox, stopping):
        url = f"{self.env['MAILDRILL_GRAPH_URL']}/users/{self.env['MAILDRILL_MAILBOX']}/sendMail"
        for message in outbox.pending():
            if stopping.is_set():
                return
            token = self.tokens.get()
            try:
                response = self.http.post(
                    url,
                    json=graph_message(message),
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=NETWORK_TIMEOUT_SECONDS,
                )
            except requests.RequestException as error:
                raise Failure(f"sendMail failed ({type(error).__name__})")
            if response.status_code == 401:
                self.tokens.forget()
            if response.status_code != 202:
                raise Failure(
                    f"sendMail answered {response.status_code}",
                    retry_after(response.headers.get("Retry-After")),
                )
            outbox.remove(message["message_id"])
            log(f"sent {message['message_id']} with Graph")


def graph_message(message):
    return {
        "message": {
            "subject": message["subject"],
            "internetMessageId": message["message_id"],
            "body": {"contentType": "Text", "content": message["body"]},
            "toRecipients": [{"emailAddress": {"address": to}} for to in message["to"]],
        },
        "saveToSentItems": True,
    }


class Sender(threading.Thread):
    """Delivers the outbox whenever it has messages; backs off after a failed round."""

    def __init__(self, env, outbox, stopping):
        super().__init__(name="sender", daemon=True)
        self.outbox = outbox
        self.stopping = stopping
        self.wake = threading.Event()
        self.cap = seconds(env.get("MAILDRILL_BACKOFF_CAP"), 300)
        graph = env.get("MAILDRILL_TRANSPORT", "smtp") == "graph"
        self.transport = Graph(env) if graph else Smtp(env)
        self.failures = 0

    def run(self):
        while not self.stopping.is_set():
            if not self.outbox.pending():
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            try:
                self.transport.deliver(self.outbox, self.stopping)
                self.failures = 0
            except Failure as failure:
                self.failures += 1
                wait = self.backoff(failure.retry_after)
                log(f"{failure}; {len(self.outbox.pending())} queued; retrying in {wait:.1f}s")
                self.stopping.wait(wait)
            except Exception as error:  # a bug: keep the queue, say where, try again later
                self.failures += 1
                where = traceback.extract_tb(error.__traceback__)[-1]
                # Not the error's text: it could quote a credential.
                log(f"unexpected {type(error).__name__} at line {where.lineno} ({where.name})")
                self.stopping.wait(self.backoff(None))

    def backoff(self, retry_after):
        """Exponential from FIRST_WAIT_SECONDS, capped, with jitter (half to all of it); never
        shorter than a Retry-After."""
        ceiling = min(self.cap, FIRST_WAIT_SECONDS * 2 ** (self.failures - 1))
        wait = random.uniform(ceiling / 2, ceiling)
        return max(wait, retry_after or 0.0)


def submit_handler(outbox, sender):
    class Submit(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path != "/messages":
                return self.reply(404, "not found")
            try:
                length = int(self.headers.get("Content-Length", 0))
                message = json.loads(self.rfile.read(length))
                message = {k: message[k] for k in ("message_id", "from", "to", "subject", "body")}
            except (ValueError, KeyError, TypeError):
                return self.reply(400, "expected {message_id, from, to, subject, body}")
            outbox.append(message)
            sender.wake.set()
            self.reply(202, "queued")

        def reply(self, status, text):
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass  # one line a request is noise

    return Submit


def main():
    env = dict(os.environ)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    outbox = Outbox(env.get("MAILDRILL_STATE_DIR") or "maildrill-subject")
    if outbox.pending():
        log(f"{len(outbox.pending())} message(s) left in the outbox by the last run")
    sender = Sender(env, outbox, stopping)
    server = HTTPServer(("127.0.0.1", 0), submit_handler(outbox, sender))
    serving = threading.Thread(target=server.serve_forever, name="submit", daemon=True)
    serving.start()
    sender.start()
    # The drill's signal: printed only once the server listens.
    port = server.server_address[1]
    print(f"MAILDRILL_READY submit=http://127.0.0.1:{port}/messages", flush=True)
    while not stopping.wait(0.2):
        pass
    log("asked to stop (SIGTERM): stopping")
    server.shutdown()
    sender.wake.set()
    sender.join(STOP_WITHIN_SECONDS)
    log(f"stopped with {len(outbox.pending())} message(s) in the outbox")
    return 0


if __name__ == "__main__":
    sys.exit(main())
