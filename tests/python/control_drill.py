"""A client that keeps sending mail while a test drives `maildrill serve`'s control API.

Usage: python control_drill.py [ENV_FILE]

ENV_FILE is serve's environment file (CONTRACTS section 2); without it, $MAILDRILL_ENV_FILE.

The client, on a background thread, sends one message about every 100 ms with Graph sendMail
(`requests`, an internetMessageId per message), with a token from msal's
ConfidentialClientApplication. It reads its secret from a file whenever it needs a token and
builds a new msal app when the value changed; when Graph answers 401 it drops msal's cached token.
A message Graph did not accept is sent again, with the same internetMessageId, at the next tick.

Meanwhile the test, through the control API (after `POST reset`: the drill expires the env
file's secret, so it starts from serve's initial state):
  1. throttles Entra's token endpoint for a short window (429, Retry-After 1) and moves the
     clock past the token's lifetime, so the client needs a token inside the window;
  2. expires the client's secret and moves the clock past the token's lifetime again: the
     token endpoint answers 401 AADSTS7000222;
  3. adds a secret, writes its text to the client's file (atomically), sees the client refused
     while the secret propagates, moves the clock past the 10 s delay, and sees it send again;
  4. reads the evidence: every message the client says it sent is in the mailbox, once; the
     token journal reads 200, 429s, 200, 401s (7000222), 200.

Prints one JSON line of what it observed (never a secret or a token) and exits 1 on anything
unexpected.
"""

import collections
import datetime
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
import uuid

import requests

import msft_sdks
from msft_sdks import Unexpected, aadsts, expect, instant, rfc3339

TICK_SECONDS = 0.1
WAIT_SECONDS = 6.0
THROTTLE_SECONDS = 2.5


class Client(threading.Thread):
    """The client under test: sendMail every tick, msal for tokens, its secret in a file."""

    def __init__(self, env, secret_path):
        super().__init__(name="drill-client", daemon=True)
        self.env = env
        self.secret_path = secret_path
        self.http = requests.Session()
        self.http.verify = env["MAILDRILL_CA_CERT"]
        self.http.trust_env = False  # else $REQUESTS_CA_BUNDLE would override `verify`
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.app, self.secret, self.generation = None, None, -1
        self.pending = None
        self.sent = []  # (internetMessageId, the secret's generation)
        self.tokens = []  # [generation, outcome, count]: token calls that missed msal's cache
        self.graph = collections.Counter()
        self.failure = None

    def run(self):
        try:
            while not self.stopping.wait(TICK_SECONDS):
                self.tick()
        except Exception:  # the client broke: the test reports it
            self.failure = traceback.format_exc(limit=5)

    def tick(self):
        if self.pending is None:
            self.pending = f"<drill-{len(self.sent)}-{uuid.uuid4()}@maildrill.test>"
        token = self.access_token()
        if token is None:
            return
        response = self.http.post(
            f"{self.env['MAILDRILL_GRAPH_URL']}/users/{self.env['MAILDRILL_MAILBOX']}/sendMail",
            json=message(self.pending),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        with self.lock:
            self.graph[response.status_code] += 1
            if response.status_code == 202:
                self.sent.append((self.pending, self.generation))
                self.pending = None
        if response.status_code == 401:
            self.forget_token()

    def access_token(self):
        with open(self.secret_path, encoding="utf-8") as file:
            secret = file.read().strip()
        if secret != self.secret:
            self.app = msft_sdks.msal_app({**self.env, "MAILDRILL_CLIENT_SECRET": secret})
            self.secret, self.generation = secret, self.generation + 1
        try:
            result = self.app.acquire_token_for_client(scopes=[msft_sdks.GRAPH_SCOPE])
        except ValueError as error:  # msal on Entra's plain-text 429 (see msft_sdks throttled)
            self.note(type(error).__name__)
            return None
        if "access_token" in result:
            if result.get("token_source") != "cache":
                self.note("ok")
            return result["access_token"]
        self.note(aadsts(result.get("error_description")) or result.get("error"))
        return None

    def note(self, outcome):
        with self.lock:
            last = self.tokens[-1] if self.tokens else None
            if last and last[:2] == [self.generation, outcome]:
                last[2] += 1
            else:
                self.tokens.append([self.generation, outcome, 1])

    def forget_token(self):
        """Graph refused the token (the clock passed its exp): msal's cache goes by local time."""
        cache = self.app.token_cache
        for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(item)

    def seen(self, outcome, generation):
        with self.lock:
            return any(t[:2] == [generation, outcome] for t in self.tokens)

    def sent_with(self, generation):
        with self.lock:
            return sum(1 for _, g in self.sent if g == generation)


def message(message_id):
    return {
        "message": {
            "subject": "maildrill control drill",
            "internetMessageId": message_id,
            "body": {"contentType": "Text", "content": "sent while the control API drills"},
            "toRecipients": [{"emailAddress": {"address": "customer@example.com"}}],
        },
        "saveToSentItems": False,
    }


def write_secret(path, value):
    """Replaces the client's secret file at once: the client reads either value, never half."""
    temporary = f"{path}.new"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(value)
    os.replace(temporary, path)


class Drill:
    """The test's side: the control API, and polling for what the client or the mocks did."""

    def __init__(self, env, client):
        self.env, self.client = env, client
        self.control = msft_sdks.Control(env)
        self.phases = {}

    def until(self, what, condition):
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            value = condition()
            if value:
                return value
            expect(self.client.failure is None, f"the client broke: {self.client.failure}")
            expect(self.client.is_alive(), "the client stopped")
            expect(time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS} s; "
                   f"the client's token calls: {self.client.tokens}, Graph: {self.client.graph}")
            time.sleep(0.05)

    def tokens(self, mark):
        return self.control.journal("entra", "token", mark)

    def advance(self, by):
        return self.control.call("POST", "clock/advance", {"by": by})["now"]

    def throttle(self):
        """Entra throttles for a window that opens when the clock jumps past the token's exp."""
        now = instant(self.control.call("GET", "clock")["now"])
        opens = now + datetime.timedelta(hours=1)
        window = {"from": rfc3339(opens),
                  "until": rfc3339(opens + datetime.timedelta(seconds=THROTTLE_SECONDS))}
        mark = self.control.mark()
        fault = self.control.inject(
            {**msft_sdks.ENTRA_THROTTLE, "retry_after": "1", **window}
        )
        self.advance("1h")
        self.until("429 then 200 from the token endpoint", lambda: recovered(self.tokens(mark)))
        matched = self.control.call("GET", "faults")["faults"][0]["matched"]
        self.control.clear_faults()
        client_failures = sum(t[2] for t in self.client.tokens if t[1] == "JSONDecodeError")
        wire_429s = sum(1 for e in self.tokens(mark) if e["status"] == 429)
        # msal keeps a 429 for its Retry-After: most of the client's calls never left it.
        self.phases["throttle"] = {**window, "fault_id": fault["id"], "matched": matched,
                                   "client_failures": client_failures, "wire_429s": wire_429s}

    def expire(self):
        app = self.app()
        valid = [s for s in app["secrets"] if s["state"] == "valid"]
        expect(len(valid) == 1, f"{len(valid)} valid secrets: {app['secrets']}")
        key = valid[0]["key_id"]
        path = f"apps/{app['app_id']}/secrets/{key}/expire"
        expect(self.control.call("POST", path)["state"] == "expired", f"{path} did not expire")
        self.advance("1h")
        self.until("AADSTS7000222 at the client", lambda: self.client.seen("AADSTS7000222", 0))
        self.phases["expired_key"] = key

    def rotate(self):
        app = self.app()
        added = self.control.call(
            "POST", f"apps/{app['app_id']}/secrets", {"display_name": "drill-rotated"}, status=201
        )
        expect(added["state"] == "propagating", f"a new secret is {added['state']}")
        write_secret(self.client.secret_path, added.pop("secret_text"))
        self.until("the new secret refused while it propagates",
                   lambda: self.client.seen("AADSTS7000222", 1))
        self.advance("11s")
        self.until("3 messages sent with the new secret", lambda: self.client.sent_with(1) >= 3)
        self.phases["rotated_key"] = added["key_id"]

    def app(self):
        apps = self.control.call("GET", "apps")["apps"]
        mine = [a for a in apps if a["app_id"] == self.env["MAILDRILL_CLIENT_ID"]]
        expect(len(mine) == 1, f"{len(mine)} apps with the client's id")
        return mine[0]


def recovered(entries):
    """A 429 and, after it, a 200."""
    statuses = [e["status"] for e in entries]
    return 429 in statuses and 200 in statuses[statuses.index(429):]


def story(entries):
    """The token journal with runs collapsed: e.g. ["200", "429", "200", "401 AADSTS7000222"]."""
    told = []
    for entry in entries:
        code = aadsts(entry["response_body"]) if entry["status"] == 401 else None
        word = f"{entry['status']} {code}" if code else str(entry["status"])
        if not told or told[-1] != word:
            told.append(word)
    return told


def evidence(drill, mark):
    client, control = drill.client, drill.control
    sent = [m for m, _ in client.sent]
    in_mailbox = [m for m in control.message_ids(drill.env["MAILDRILL_MAILBOX"])
                  if m and m.startswith("<drill-")]
    counted = collections.Counter(in_mailbox)
    missing = [m for m in sent if m not in counted]
    duplicates = sorted(m for m, n in counted.items() if n > 1)
    extra = sorted(set(in_mailbox) - set(sent))
    expect(not missing, f"the mailbox lacks {len(missing)} sent messages: {missing}")
    expect(not duplicates and not extra, f"duplicated {duplicates}, never reported {extra}")
    entries = control.journal("entra", "token", mark)
    told = story(entries)
    expected = ["200", "429", "200", "401 AADSTS7000222", "200"]
    expect(told == expected, f"the token journal reads {told}, not {expected}")
    return {
        "message_ids": sent,
        "mailbox_has_every_message": True,
        "token_story": told,
        "token_statuses": dict(sorted(collections.Counter(
            str(e["status"]) for e in entries).items())),
    }


def run(env, workdir):
    secret_path = os.path.join(workdir, "client-secret")
    write_secret(secret_path, env["MAILDRILL_CLIENT_SECRET"])
    client = Client(env, secret_path)
    drill = Drill(env, client)
    # The drill expires the env file's secret: it starts from serve's initial state.
    drill.control.call("POST", "reset", status=204)
    mark = drill.control.mark()
    started = time.monotonic()
    client.start()
    try:
        drill.until("3 messages sent", lambda: len(client.sent) >= 3)
        drill.throttle()
        drill.expire()
        drill.rotate()
    finally:
        client.stopping.set()
        client.join(timeout=15)
    expect(client.failure is None, f"the client broke: {client.failure}")
    return {
        "versions": msft_sdks.versions("msal", "requests"),
        "seconds": round(time.monotonic() - started, 1),
        "phases": drill.phases,
        "client": {
            "sent": len(client.sent),
            "sent_after_rotation": client.sent_with(1),
            "token_calls": client.tokens,
            "graph_statuses": {str(k): v for k, v in sorted(client.graph.items())},
        },
        **evidence(drill, mark),
    }


def main(argv):
    if len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[1] if len(argv) == 2 else os.environ.get("MAILDRILL_ENV_FILE")
    if not path:
        print("no environment file: pass it or set MAILDRILL_ENV_FILE", file=sys.stderr)
        return 2
    # msal logs a traceback for each plain-text 429 it parses; the client counts them instead.
    logging.getLogger("msal").setLevel(logging.CRITICAL)
    env = msft_sdks.read_env(path)
    try:
        with tempfile.TemporaryDirectory(prefix="maildrill-drill-") as workdir:
            observed = run(env, workdir)
    except Unexpected as error:
        print(json.dumps({"command": "control-drill", "unexpected": str(error)}))
        return 1
    except Exception as error:  # the client's libraries or the control API: what it was
        traceback.print_exc()
        print(json.dumps({"command": "control-drill", "exception": type(error).__name__}))
        return 1
    print(json.dumps({"command": "control-drill", **observed}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
