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
- Alerts (PagerDuty Events API v2, posted to $MAILDRILL_ALERTS_URL, never over the mail path):
  an expiry alert `MAILDRILL_EXPIRY_LEAD` (default 30 days) before each of the app's credentials
  ends, or at once when that instant has passed, from the credentials read through Graph's
  applications API at start, every $MAILDRILL_EXPIRY_POLL (default 1 hour) and soon after the
  secret file changes; resolved once another credential of the kind works and outlives the lead.
  A latency alert when the oldest queued message is older than $MAILDRILL_LATENCY_THRESHOLD,
  resolved after the queue has been healthy for $MAILDRILL_LATENCY_RESOLVE_AFTER (default the
  threshold). Open alerts and those the sink has not accepted yet are kept in the state
  directory; undelivered ones are retried with backoff, also by the next process. Events carry
  $MAILDRILL_ALERTS_ROUTING_KEY (default `maildrill`); without $MAILDRILL_ALERTS_URL, no alerts.
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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import msal
import requests

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SMTP_SCOPE = "https://outlook.office365.com/.default"
FIRST_WAIT_SECONDS = 0.5
NETWORK_TIMEOUT_SECONDS = 10
STOP_WITHIN_SECONDS = 2.0
ALERT_SOURCE = "mail-sendout (tests/python/subject.py)"
LATENCY_KEY = "delivery-latency/mail-sendout"


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
                        message = json.loads(line)
                    except ValueError:
                        continue  # a line half-written when the process was killed
                    message.setdefault("queued_at", time.time())
                    self.messages.append(message)
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

    def oldest(self):
        """When the oldest message still queued was taken (seconds since the epoch), or None."""
        with self.lock:
            return min((m["queued_at"] for m in self.messages), default=None)

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


def rfc3339(at):
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def instant(text):
    """An RFC 3339 instant as Graph writes them (`2025-02-14T11:30:00.0000000Z`), as seconds
    since the epoch; None when it is not one."""
    pattern = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?"
    found = re.fullmatch(pattern, text or "")
    if not found:
        return None
    whole, fraction, zone = found.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    at = datetime.fromisoformat(whole + zone).timestamp()
    return at + float(f"0.{fraction}") if fraction else at


def in_words(span):
    """A span of seconds for a person: `30 days`, `5 hours`, `58 seconds`."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if span >= size:
            count = int(span // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    count = max(0, int(span))
    return f"{count} second{'s' if count != 1 else ''}"


class Alerts(threading.Thread):
    """Posts PagerDuty Events API v2 events to $MAILDRILL_ALERTS_URL, in order. An event the
    sink does not accept (it is down, 429, 5xx) is retried with backoff, ahead of any later
    one; open alerts and events not yet accepted are kept in $MAILDRILL_STATE_DIR/alerts.json,
    so the next process resolves what this one triggered and posts what it could not."""

    FIRST_RETRY_SECONDS = 2.0
    LONGEST_RETRY_SECONDS = 60.0

    def __init__(self, env, state_dir, stopping):
        super().__init__(name="alerts", daemon=True)
        self.url = env["MAILDRILL_ALERTS_URL"]
        self.routing_key = env.get("MAILDRILL_ALERTS_ROUTING_KEY") or "maildrill"
        self.stopping = stopping
        self.path = os.path.join(state_dir, "alerts.json")
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.http = requests.Session()
        self.http.verify = env["MAILDRILL_CA_CERT"]
        self.http.trust_env = False
        self.open, self.pending = {}, []  # open: dedup key -> kind; pending: event bodies
        try:
            with open(self.path, encoding="utf-8") as file:
                state = json.load(file)
            self.open, self.pending = dict(state["open"]), list(state["pending"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no alerts yet (or a file from a process killed mid-write: start afresh)

    def is_open(self, dedup_key):
        with self.lock:
            return dedup_key in self.open

    def open_keys(self, kind):
        with self.lock:
            return [key for key, k in self.open.items() if k == kind]

    def trigger(self, dedup_key, kind, summary, severity, details):
        """Pages, unless the alert with this key is open already."""
        body = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": summary,
                "source": ALERT_SOURCE,
                "severity": severity,
                "timestamp": rfc3339(time.time()),
                "component": "mail-sendout",
                "custom_details": dict(details, kind=kind),
            },
        }
        with self.lock:
            if dedup_key in self.open:
                return
            self.open[dedup_key] = kind
            self.pending.append(body)
            self.save()
        log(f"alert: trigger {dedup_key}: {summary}")
        self.wake.set()

    def resolve(self, dedup_key, why):
        """Resolves the open alert with this key, if there is one."""
        body = {"routing_key": self.routing_key, "event_action": "resolve", "dedup_key": dedup_key}
        with self.lock:
            if self.open.pop(dedup_key, None) is None:
                return
            self.pending.append(body)
            self.save()
        log(f"alert: resolve {dedup_key}: {why}")
        self.wake.set()

    def save(self):
        temporary = f"{self.path}.new"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump({"open": self.open, "pending": self.pending}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)

    def run(self):
        failures = 0
        while not self.stopping.is_set():
            with self.lock:
                head = self.pending[0] if self.pending else None
            if head is None:
                failures = 0
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            if self.post(head):
                failures = 0
                with self.lock:
                    if self.pending and self.pending[0] is head:
                        self.pending.pop(0)
                        self.save()
                continue
            failures += 1
            ceiling = self.FIRST_RETRY_SECONDS * 2 ** (failures - 1)
            ceiling = min(self.LONGEST_RETRY_SECONDS, ceiling)
            self.stopping.wait(random.uniform(ceiling / 2, ceiling))

    def post(self, body):
        """Whether the event is done with: accepted, or refused as invalid (which no retry
        mends); False when it should be posted again."""
        what = f"{body['event_action']} {body['dedup_key']}"
        try:
            response = self.http.post(self.url, json=body, timeout=NETWORK_TIMEOUT_SECONDS)
        except requests.RequestException as error:
            log(f"alert: {what} not delivered ({type(error).__name__}); will retry")
            return False
        if 200 <= response.status_code < 300:
            log(f"alert: {what} delivered")
            return True
        if response.status_code == 400:
            log(f"alert: {what} refused as invalid (400); dropped")
            return True
        log(f"alert: {what} not delivered ({response.status_code}); will retry")
        return False


class ExpiryMonitor(threading.Thread):
    """Reads the app's `passwordCredentials` and `keyCredentials` through Graph's applications
    API, at start, every `poll_every` and soon after the secret file changes (a rotation), and
    raises an expiry alert `lead` before each credential's end, or at once when that instant has
    passed. What it read last stands while Graph cannot be read (e.g. the secret expired)."""

    SECRET_FILE_CHECK_SECONDS = 5.0
    FIRST_RETRY_SECONDS = 15.0

    def __init__(self, env, alerts, stopping):
        super().__init__(name="expiry-monitor", daemon=True)
        self.env = env
        self.alerts = alerts
        self.stopping = stopping
        self.app_id = env["MAILDRILL_CLIENT_ID"]
        self.lead = seconds(env.get("MAILDRILL_EXPIRY_LEAD"), 30 * 86400)
        self.poll_every = seconds(env.get("MAILDRILL_EXPIRY_POLL"), 3600)
        self.tokens = Tokens(env, GRAPH_SCOPE)
        self.http = requests.Session()
        self.http.verify = env["MAILDRILL_CA_CERT"]
        self.http.trust_env = False
        self.known = []
        self.fired = set()

    def read(self):
        """The app's credentials, or None when Graph cannot be read."""
        url = (
            f"{self.env['MAILDRILL_GRAPH_URL']}/applications(appId='{self.app_id}')"
            "?$select=passwordCredentials,keyCredentials"
        )
        try:
            token = self.tokens.get()
            response = self.http.get(
                url, headers={"Authorization": f"Bearer {token}"}, timeout=NETWORK_TIMEOUT_SECONDS
            )
        except Failure as failure:
            log(f"expiry monitor: cannot read the app's credentials: {failure}")
            return None
        except requests.RequestException as error:
            log(f"expiry monitor: reading the app's credentials failed ({type(error).__name__})")
            return None
        if response.status_code == 401:
            self.tokens.forget()
        if response.status_code != 200:
            log(f"expiry monitor: Graph answered {response.status_code} for the app's credentials")
            return None
        try:
            body = response.json()
        except ValueError:
            log("expiry monitor: Graph's answer was not JSON")
            return None
        known = []
        for kind, prop in (("secret", "passwordCredentials"), ("certificate", "keyCredentials")):
            for credential in body.get(prop) or []:
                start = instant(credential.get("startDateTime"))
                end = instant(credential.get("endDateTime"))
                if credential.get("keyId") and start is not None and end is not None:
                    known.append(
                        {
                            "kind": kind,
                            "key_id": credential["keyId"],
                            "name": credential.get("displayName") or "",
                            "start": start,
                            "end": end,
                        }
                    )
        return known

    def secret_stamp(self):
        """When and how the secret file last changed (not its value)."""
        path = self.env.get("MAILDRILL_CLIENT_SECRET_FILE")
        try:
            status = os.stat(path) if path else None
        except OSError:
            return None
        return status and (status.st_mtime_ns, status.st_size, status.st_ino)

    def dedup_key(self, credential):
        return f"credential-expiry/{self.app_id}/{credential['key_id']}/{int(self.lead)}s"

    def rotated_away(self, credential, now):
        """Another credential of its kind works now and outlives the lead."""
        return any(
            other["key_id"] != credential["key_id"]
            and other["kind"] == credential["kind"]
            and other["start"] <= now
            and other["end"] > credential["end"]
            and other["end"] - now > self.lead
            for other in self.known
        )

    def run(self):
        next_poll, failures = time.time(), 0
        stamp = self.secret_stamp()
        while not self.stopping.is_set():
            now = time.time()
            if self.secret_stamp() != stamp:
                stamp = self.secret_stamp()
                next_poll = min(next_poll, now)  # a rotation: read what the tenant holds now
            if now >= next_poll:
                read = self.read()
                if read is None:
                    failures += 1
                    wait = min(self.poll_every, self.FIRST_RETRY_SECONDS * 2 ** (failures - 1))
                    next_poll = now + wait
                else:
                    failures = 0
                    if read != self.known:
                        ends = ", ".join(f"{c['kind']} ends {rfc3339(c['end'])}" for c in read)
                        log(f"expiry monitor: {len(read)} credential(s): {ends or 'none'}")
                    self.known = read
                    next_poll = now + self.poll_every
                    self.resolve_rotated(now)
            self.raise_due(now)
            due = [
                c["end"] - self.lead
                for c in self.known
                if self.dedup_key(c) not in self.fired and c["end"] - self.lead > now
            ]
            wake = min([next_poll, now + self.SECRET_FILE_CHECK_SECONDS] + due)
            self.stopping.wait(max(0.0, wake - time.time()))

    def raise_due(self, now):
        for credential in self.known:
            key = self.dedup_key(credential)
            if key in self.fired or credential["end"] - self.lead > now:
                continue
            self.fired.add(key)
            if self.rotated_away(credential, now) or self.alerts.is_open(key):
                continue
            noun = "Client secret" if credential["kind"] == "secret" else "Certificate"
            end = rfc3339(credential["end"])
            if credential["end"] <= now:
                summary = f"{noun} '{credential['name']}' of app {self.app_id} expired at {end}"
                summary += ": mail cannot be sent"
                severity = "critical"
            else:
                left = in_words(credential["end"] - now)
                summary = f"{noun} '{credential['name']}' of app {self.app_id} expires at {end}"
                summary += f", in {left}: rotate it"
                severity = "warning"
            details = {
                "app_id": self.app_id,
                "key_id": credential["key_id"],
                "credential": credential["kind"],
                "end_date_time": end,
                "lead_s": int(self.lead),
            }
            self.alerts.trigger(key, "credential-expiry", summary, severity, details)

    def resolve_rotated(self, now):
        by_key = {self.dedup_key(c): c for c in self.known}
        for key in self.alerts.open_keys("credential-expiry"):
            if not key.startswith(f"credential-expiry/{self.app_id}/"):
                continue
            credential = by_key.get(key)
            if credential is None:
                self.alerts.resolve(key, "the credential is gone from the app")
            elif self.rotated_away(credential, now):
                self.alerts.resolve(key, "a newer credential of its kind is in place")


class LatencyMonitor(threading.Thread):
    """Triggers the latency alert once when the oldest queued message is older than the
    threshold; resolves it after the queue has been healthy for `resolve_after`."""

    def __init__(self, env, outbox, alerts, stopping):
        super().__init__(name="latency-monitor", daemon=True)
        self.outbox = outbox
        self.alerts = alerts
        self.stopping = stopping
        self.threshold = seconds(env.get("MAILDRILL_LATENCY_THRESHOLD"), 300)
        self.resolve_after = seconds(env.get("MAILDRILL_LATENCY_RESOLVE_AFTER"), self.threshold)
        self.check_every = min(1.0, self.threshold / 10)

    def run(self):
        healthy_since = None
        while not self.stopping.wait(self.check_every):
            now = time.time()
            oldest = self.outbox.oldest()
            age = now - oldest if oldest is not None else 0.0
            if age > self.threshold:
                healthy_since = None
                queued = len(self.outbox.pending())
                summary = (
                    f"Mail delivery is stalled: the oldest of {queued} queued message(s) has "
                    f"waited {int(age)} s (threshold {int(self.threshold)} s)"
                )
                details = {
                    "oldest_age_s": int(age),
                    "queued": queued,
                    "threshold_s": int(self.threshold),
                }
                self.alerts.trigger(LATENCY_KEY, "delivery-latency", summary, "critical", details)
            elif self.alerts.is_open(LATENCY_KEY):
                healthy_since = healthy_since or now
                if now - healthy_since >= self.resolve_after:
                    why = f"healthy for {int(now - healthy_since)} s"
                    self.alerts.resolve(LATENCY_KEY, why)


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
            message["queued_at"] = time.time()
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
    state_dir = env.get("MAILDRILL_STATE_DIR") or "maildrill-subject"
    outbox = Outbox(state_dir)
    if outbox.pending():
        log(f"{len(outbox.pending())} message(s) left in the outbox by the last run")
    sender = Sender(env, outbox, stopping)
    alerts, monitors = None, []
    if env.get("MAILDRILL_ALERTS_URL"):
        alerts = Alerts(env, state_dir, stopping)
        monitors = [
            ExpiryMonitor(env, alerts, stopping),
            LatencyMonitor(env, outbox, alerts, stopping),
        ]
    else:
        log("no MAILDRILL_ALERTS_URL: no expiry or latency alerts")
    server = HTTPServer(("127.0.0.1", 0), submit_handler(outbox, sender))
    serving = threading.Thread(target=server.serve_forever, name="submit", daemon=True)
    serving.start()
    sender.start()
    for thread in ([alerts] if alerts else []) + monitors:
        thread.start()
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
