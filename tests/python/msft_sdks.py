"""Microsoft's own Python SDKs (msal, azure-identity, msgraph-sdk) against `maildrill serve`.

Usage: python msft_sdks.py COMMAND [ENV_FILE]

ENV_FILE is serve's environment file (CONTRACTS section 2); without it, $MAILDRILL_ENV_FILE.
Commands:
  msal     acquire a Graph token with msal's ConfidentialClientApplication, then again (cache)
  graph    azure-identity + msgraph-sdk: sendMail with a chosen Message-ID, the inbox delta
           sync (every page, then the delta link), the applications API, addPassword and
           removePassword
  expired  the tenant's secret has expired: msal's error dict, azure-identity's
           ClientAuthenticationError and msgraph-sdk's sendMail all carry AADSTS7000222
  throttled  faults injected through serve's control API: Graph 429s on sendMail (kiota's
           RetryHandler retries after Retry-After, then msgraph-sdk raises an ODataError with
           the status and headers) and Entra 429s on the token endpoint (what msal and
           azure-identity surface of the status and Retry-After, and what they hide)

Each command prints one JSON line of what it observed (statuses, ids, error codes; never the
secret, a token or a generated secret's text) and exits 1 on any unexpected result.
"""

import asyncio
import base64
import datetime
import json
import os
import re
import sys
import traceback
import uuid
from importlib import metadata
from urllib.parse import urlsplit

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
IDEMPOTENCY_HEADER = "X-Maildrill-Idempotency-Key"
DELTA_PAGE_SIZE = 2


class Unexpected(Exception):
    """An observation the SDKs should not have made against the harness."""


def expect(condition, what):
    if not condition:
        raise Unexpected(what)


def read_env(path):
    env = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                env[key] = value
    return env


def versions(*names):
    return {name: metadata.version(name) for name in names}


def claims_of(token):
    """The access token's non-secret claims (audience, roles, tenant), for the report."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {
        "aud": claims.get("aud"),
        "tid": claims.get("tid"),
        "roles": sorted(claims.get("roles", [])),
    }


def aadsts(text):
    """The first AADSTS code in an error text, without the rest (which may name the app)."""
    found = re.search(r"AADSTS\d+", text or "")
    return found.group(0) if found else None


def msal_app(env):
    import msal
    import requests

    session = requests.Session()
    session.verify = env["MAILDRILL_CA_CERT"]
    # Else $REQUESTS_CA_BUNDLE or $CURL_CA_BUNDLE, when set, would override `verify`.
    session.trust_env = False
    return msal.ConfidentialClientApplication(
        env["MAILDRILL_CLIENT_ID"],
        client_credential=env["MAILDRILL_CLIENT_SECRET"],
        authority=env["MAILDRILL_AUTHORITY"],
        validate_authority=False,
        instance_discovery=False,
        http_client=session,
    )


def run_msal(env):
    app = msal_app(env)
    first = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    expect("access_token" in first, f"msal error {first.get('error')} {first.get('error_codes')}")
    second = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    expect("access_token" in second, f"msal error {second.get('error')} on the second call")
    expect(second["access_token"] == first["access_token"], "the second token is not the cached one")
    claims = claims_of(first["access_token"])
    expect(claims["tid"] == env["MAILDRILL_TENANT_ID"], f"tid {claims['tid']}")
    return {
        "versions": versions("msal", "requests"),
        "token_type": first.get("token_type"),
        "expires_in_positive": first.get("expires_in", 0) > 0,
        "first_source": first.get("token_source"),
        "second_source": second.get("token_source"),
        **claims,
    }


def authority_host(env):
    parts = urlsplit(env["MAILDRILL_AUTHORITY"])
    return f"{parts.scheme}://{parts.netloc}"


def credential(env):
    return credential_with(env)


def credential_with(env, **pipeline):
    """azure-identity's ClientSecretCredential for the harness; `pipeline` goes to azure-core
    (e.g. `retry_total`)."""
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        env["MAILDRILL_TENANT_ID"],
        env["MAILDRILL_CLIENT_ID"],
        env["MAILDRILL_CLIENT_SECRET"],
        authority=authority_host(env),
        disable_instance_discovery=True,
        connection_verify=env["MAILDRILL_CA_CERT"],
        **pipeline,
    )


def graph_client(env):
    """msgraph-sdk as its documentation builds it, its base URL replaced by the harness's."""
    # httpx (under kiota) trusts the harness's CA through SSL_CERT_FILE.
    os.environ["SSL_CERT_FILE"] = env["MAILDRILL_CA_CERT"]
    from msgraph import GraphServiceClient

    client = GraphServiceClient(credential(env), scopes=[GRAPH_SCOPE])
    client.request_adapter.base_url = env["MAILDRILL_GRAPH_URL"]
    return client


def outgoing_message(env, message_id, idempotency_key):
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.internet_message_header import InternetMessageHeader
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.users.item.send_mail.send_mail_post_request_body import (
        SendMailPostRequestBody,
    )

    message = Message(
        subject="maildrill msgraph-sdk probe",
        body=ItemBody(content_type=BodyType.Text, content="sent by msgraph-sdk"),
        to_recipients=[Recipient(email_address=EmailAddress(address="customer@example.com"))],
        internet_message_id=message_id,
        internet_message_headers=[
            InternetMessageHeader(name=IDEMPOTENCY_HEADER, value=idempotency_key)
        ],
    )
    return SendMailPostRequestBody(message=message, save_to_sent_items=False)


async def send_mail(client, env):
    message_id = f"<msgraph-sdk-{uuid.uuid4()}@maildrill.test>"
    key = f"msgraph-sdk-{uuid.uuid4()}"
    body = outgoing_message(env, message_id, key)
    users = client.users.by_user_id(env["MAILDRILL_MAILBOX"])
    # sendMail's 202 has no body: the SDK returns None; any error status would raise.
    result = await users.send_mail.post(body)
    expect(result is None, f"sendMail returned {result!r}")
    return {"message_id": message_id, "idempotency_key": key}


async def delta_round(builder, first):
    """One delta round: every page, following @odata.nextLink; returns messages and the link."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    config = RequestConfiguration()
    config.headers.add("Prefer", f"odata.maxpagesize={DELTA_PAGE_SIZE}")
    page = await (builder if first is None else builder.with_url(first)).get(config)
    messages, pages = list(page.value or []), 1
    while page.odata_next_link:
        expect(pages < 100, "delta never ends")
        page = await builder.with_url(page.odata_next_link).get(config)
        messages += page.value or []
        pages += 1
    expect(page.odata_delta_link, "the last delta page has no @odata.deltaLink")
    return messages, pages, page.odata_delta_link


async def delta_sync(client, env):
    inbox = client.users.by_user_id(env["MAILDRILL_MAILBOX"]).mail_folders.by_mail_folder_id("inbox")
    builder = inbox.messages.delta
    messages, pages, link = await delta_round(builder, None)
    again, again_pages, _ = await delta_round(builder, link)
    expect(not again, f"the delta link returned {len(again)} messages already synced")
    ids = [m.id for m in messages]
    expect(len(set(ids)) == len(ids), "a message came twice in one round")
    return {
        "messages": len(messages),
        "pages": pages,
        "internet_message_ids": [m.internet_message_id for m in messages],
        "subjects": [m.subject for m in messages],
        "after_delta_link": {"messages": len(again), "pages": again_pages},
    }


async def find_app(client, app_id):
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.applications.applications_request_builder import (
        ApplicationsRequestBuilder,
    )

    query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
        filter=f"appId eq '{app_id}'"
    )
    listed = await client.applications.get(RequestConfiguration(query_parameters=query))
    expect(len(listed.value) == 1, f"{len(listed.value)} applications with appId {app_id}")
    return listed.value[0]


def credentials_json(app):
    return [
        {
            "key_id": str(c.key_id),
            "display_name": c.display_name,
            "end": c.end_date_time.isoformat() if c.end_date_time else None,
        }
        for c in app.password_credentials or []
    ]


async def rotate(client, object_id):
    """addPassword then removePassword: what a rotation job does. The new secret's text is
    checked to be there and never printed."""
    from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
        AddPasswordPostRequestBody,
    )
    from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
        RemovePasswordPostRequestBody,
    )
    from msgraph.generated.models.password_credential import PasswordCredential

    app = client.applications.by_application_id(object_id)
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=180)
    spec = PasswordCredential(display_name="msgraph-sdk-probe", end_date_time=end)
    added = await app.add_password.post(AddPasswordPostRequestBody(password_credential=spec))
    expect(bool(added.secret_text), "addPassword returned no secretText")
    expect(added.key_id is not None, "addPassword returned no keyId")
    await app.remove_password.post(RemovePasswordPostRequestBody(key_id=added.key_id))
    return {
        "key_id": str(added.key_id),
        "display_name": added.display_name,
        "end_offset_seconds": round((added.end_date_time - end).total_seconds()),
    }


async def applications(client, env):
    listed = await find_app(client, env["MAILDRILL_CLIENT_ID"])
    by_app_id = await client.applications_with_app_id(env["MAILDRILL_CLIENT_ID"]).get()
    expect(by_app_id.id == listed.id, "applications(appId=) names another app")
    added = await rotate(client, listed.id)
    after = await client.applications.by_application_id(listed.id).get()
    keys_after = [c["key_id"] for c in credentials_json(after)]
    expect(added["key_id"] not in keys_after, "removePassword left the new key")
    return {
        "id": listed.id,
        "app_id": listed.app_id,
        "display_name": listed.display_name,
        "password_credentials": credentials_json(listed),
        "add_password": added,
        "credentials_after_remove": len(keys_after),
    }


async def run_graph_async(env):
    client = graph_client(env)
    sent = await send_mail(client, env)
    sync = await delta_sync(client, env)
    apps = await applications(client, env)
    return {
        "versions": versions("msgraph-sdk", "azure-identity", "microsoft-kiota-http", "httpx"),
        "send_mail": sent,
        "delta": sync,
        "application": apps,
    }


def run_graph(env):
    return asyncio.run(run_graph_async(env))


async def expired_send(env):
    from azure.core.exceptions import ClientAuthenticationError

    client = graph_client(env)
    try:
        await send_mail(client, env)
    except ClientAuthenticationError as error:
        return {"exception": type(error).__name__, "aadsts": aadsts(str(error))}
    raise Unexpected("msgraph-sdk sent mail with an expired secret")


def run_expired(env):
    from azure.core.exceptions import ClientAuthenticationError

    result = msal_app(env).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    expect("access_token" not in result, "msal got a token with an expired secret")
    try:
        credential(env).get_token(GRAPH_SCOPE)
        raise Unexpected("azure-identity got a token with an expired secret")
    except ClientAuthenticationError as error:
        identity = {"exception": type(error).__name__, "aadsts": aadsts(str(error))}
    observed = {
        "versions": versions("msal", "azure-identity", "msgraph-sdk"),
        "msal": {
            "error": result.get("error"),
            "error_codes": result.get("error_codes"),
            "aadsts": aadsts(result.get("error_description")),
        },
        "azure_identity": identity,
        "msgraph_send_mail": asyncio.run(expired_send(env)),
    }
    for part in ("msal", "azure_identity", "msgraph_send_mail"):
        code = observed[part]["aadsts"]
        expect(code == "AADSTS7000222", f"{part} carries {code}, not AADSTS7000222")
    return observed


class Control:
    """serve's control API (README, "The control API"): the bearer token, serve's CA, and no
    proxy or CA bundle from the environment. A call answered with another status than the one
    expected is reported with the request and the response (a secret's text redacted)."""

    def __init__(self, env):
        import requests

        self.base = env["MAILDRILL_CONTROL_URL"]
        self.session = requests.Session()
        self.session.verify = env["MAILDRILL_CA_CERT"]
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {env['MAILDRILL_CONTROL_TOKEN']}"

    def call(self, method, path, body=None, status=200):
        response = self.session.request(method, f"{self.base}/{path}", json=body, timeout=10)
        if response.status_code != status:
            text = re.sub(r'"secret_text":"[^"]*"', '"secret_text":"[redacted]"', response.text)
            raise Unexpected(f"control API: {method} {path} {json.dumps(body)} answered "
                             f"{response.status_code} {text[:600]} (expected {status})")
        return response.json() if response.content else None

    def inject(self, fault):
        return self.call("POST", "faults", fault, status=201)

    def clear_faults(self):
        self.call("DELETE", "faults", status=204)
        left = self.call("GET", "faults")["faults"]
        expect(not left, f"DELETE faults left {left}")

    def mark(self):
        """The journal's last sequence number: `journal(.., after=mark)` is what came next."""
        return self.call("GET", "journal?limit=1")["total"]

    def journal(self, target, operation, after=0):
        entries = []
        while True:
            page = self.call(
                "GET", f"journal?target={target}&operation={operation}&after={after}&limit=1000"
            )
            entries += page["entries"]
            if page.get("next_after") is None:
                return entries
            after = page["next_after"]

    def message_ids(self, upn):
        messages = self.call("GET", f"mailboxes/{upn}/messages")["messages"]
        return [m["message_id"] for m in messages]


def instant(text):
    """An instant of the control API (RFC 3339, UTC, nanoseconds) as a datetime."""
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    expect(found, f"not an RFC 3339 UTC instant: {text}")
    base = datetime.datetime.fromisoformat(found.group(1)).replace(tzinfo=datetime.timezone.utc)
    return base + datetime.timedelta(microseconds=int((found.group(2) or "0")[:6].ljust(6, "0")))


def rfc3339(moment):
    return moment.isoformat().replace("+00:00", "Z")


def wire(entries):
    """The journal entries as statuses and the seconds between one request and the next."""
    times = [instant(e["at"]) for e in entries]
    return {
        "statuses": [e["status"] for e in entries],
        "faults": [e["fault"] for e in entries],
        "gaps": [round((b - a).total_seconds(), 3) for a, b in zip(times, times[1:])],
    }


def api_error_json(error):
    """What kiota's APIError (msgraph-sdk's ODataError) carries, as plain data."""
    headers = {k.lower(): v for k, v in (error.response_headers or {}).items()}
    main = getattr(error, "error", None)
    return {
        "exception": type(error).__name__,
        "response_status_code": error.response_status_code,
        "retry_after_header": headers.get("retry-after"),
        "message": error.message,
        "error_code": getattr(main, "code", None),
        "error_message": getattr(main, "message", None),
    }


GRAPH_THROTTLE = {"target": "graph", "kind": "respond", "operation": "send-mail",
                  "retry_after": "1"}


async def graph_throttled(env, control, reply, first):
    """sendMail through msgraph-sdk while Graph answers the first `first` with `reply` (a 429
    of fixtures/wire/graph.toml) and `Retry-After: 1`."""
    from kiota_abstractions.api_error import APIError

    mark = control.mark()
    control.inject({**GRAPH_THROTTLE, "reply": reply, "first": first})
    message_id = None
    try:
        message_id = (await send_mail(graph_client(env), env))["message_id"]
        outcome = {"sent": True}
    except APIError as error:
        outcome = {"sent": False, "error": api_error_json(error)}
    control.clear_faults()
    seen = wire(control.journal("graph", "send-mail", mark))
    delivered = message_id is not None and message_id in control.message_ids(
        env["MAILDRILL_MAILBOX"]
    )
    expect(delivered == outcome["sent"], f"sendMail sent={outcome['sent']}, delivered={delivered}")
    expect(all(gap >= 1.0 for gap in seen["gaps"]), f"a retry before Retry-After: {seen}")
    return {"reply": reply, "first": first, "message_id": message_id, **outcome, "wire": seen}


async def run_graph_throttled(env, control):
    from kiota_http.middleware.options import RetryHandlerOption

    retries = RetryHandlerOption.DEFAULT_MAX_RETRIES
    once = await graph_throttled(env, control, "mailbox_concurrency", 1)
    expect(once["sent"], "sendMail failed after one 429")
    expect(once["wire"]["statuses"] == [429, 202], f"one 429 then 202: {once['wire']}")
    always = await graph_throttled(env, control, "too_many_requests", retries + 5)
    expect(not always["sent"], "sendMail succeeded through persistent 429s")
    expect(always["wire"]["statuses"] == [429] * (retries + 1), f"retries: {always['wire']}")
    error = always["error"]
    expect(error["exception"] == "ODataError", f"raised {error['exception']}")
    expect(error["response_status_code"] == 429, f"status {error['response_status_code']}")
    expect(error["retry_after_header"] == "1", f"Retry-After {error['retry_after_header']}")
    return {"max_retries": retries, "retried_once": once, "retries_exhausted": always}


def msal_outcome(app):
    """One acquire_token_for_client under throttling: the error dict, or what it raised."""
    try:
        result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    except Exception as error:  # what msal raises is the observation
        attributes = vars(error)
        return {
            "raised": type(error).__name__,
            "is_value_error": isinstance(error, ValueError),
            "attributes": sorted(attributes),
            "body": attributes.get("doc"),
            "status_exposed": 429 in attributes.values() or "429" in str(error),
            "retry_after_exposed": any("retry" in name.lower() or "header" in name.lower()
                                       for name in attributes),
        }
    expect("access_token" not in result, "msal got a token while Entra throttles")
    return {
        "error": result.get("error"),
        "error_codes": result.get("error_codes"),
        "keys": sorted(result),
        "status_exposed": 429 in result.values(),
        "retry_after_exposed": any("retry" in k.lower() for k in result),
    }


ENTRA_THROTTLE = {"target": "entra", "kind": "respond", "reply": "throttled", "operation": "token"}


def msal_throttled(env, control):
    """Two calls on one msal app while Entra answers 429 with `Retry-After: 7`."""
    mark = control.mark()
    control.inject({**ENTRA_THROTTLE, "retry_after": "7"})
    app = msal_app(env)
    calls = [msal_outcome(app), msal_outcome(app)]
    control.clear_faults()
    seen = wire(control.journal("entra", "token", mark))
    expect(seen["statuses"][:1] == [429], f"msal's first request was not throttled: {seen}")
    # msal's ThrottledHttpClient keeps a 429 for its Retry-After: the second call stays local.
    return {"calls": calls, "wire": seen}


def identity_outcome(env, **pipeline):
    from azure.core.exceptions import ClientAuthenticationError

    try:
        credential_with(env, **pipeline).get_token(GRAPH_SCOPE)
    except ClientAuthenticationError as error:
        response = error.response
        headers = {k.lower(): v for k, v in response.headers.items()} if response else {}
        return {
            "raised": type(error).__name__,
            "status_code": error.status_code,
            "response": response is not None,
            "retry_after_header": headers.get("retry-after"),
            "cause": error.exc_type.__name__ if error.exc_type else None,
            "message": error.message,
        }
    raise Unexpected("azure-identity got a token while Entra throttles")


def identity_throttled(env, control, retry_after, first, **pipeline):
    mark = control.mark()
    control.inject({**ENTRA_THROTTLE, "retry_after": retry_after, "first": first})
    outcome = identity_outcome(env, **pipeline)
    control.clear_faults()
    seen = wire(control.journal("entra", "token", mark))
    expect(set(seen["statuses"]) == {429}, f"azure-identity's requests: {seen}")
    expect(all(gap >= float(retry_after) for gap in seen["gaps"]), f"early retry: {seen}")
    return {"retry_after": retry_after, **outcome, "wire": seen}


def run_entra_throttled(env, control):
    msal_seen = msal_throttled(env, control)
    # azure-core's RetryPolicy retries a 429 after its Retry-After (3 times by default): with
    # Retry-After 7 that is 21 s, so once without retries to see the error, then the retries
    # with Retry-After 1.
    single = identity_throttled(env, control, "7", 100, retry_total=0)
    expect(single["wire"]["statuses"] == [429], f"retry_total=0 retried: {single['wire']}")
    retried = identity_throttled(env, control, "1", 100)
    expect(len(retried["wire"]["statuses"]) > 1, f"azure-identity did not retry: {retried}")
    return {"msal": msal_seen, "azure_identity": {"no_retries": single, "retried": retried}}


def surfaced(status, retry_after, how):
    """What an SDK lets its caller see of a 429: the status and Retry-After, or None; and how."""
    hidden = [name for name, value in (("status", status), ("retry_after", retry_after))
              if value is None]
    return {"status": status, "retry_after": retry_after, "hidden": hidden, "how": how}


def surfaces(graph, entra):
    error = graph["retries_exhausted"]["error"]
    msal_call = entra["msal"]["calls"][0]
    identity = entra["azure_identity"]["no_retries"]
    return {
        "msgraph_sdk": surfaced(
            error["response_status_code"], error["retry_after_header"],
            f"{error['exception']}.response_status_code, .response_headers, "
            f".error.code {error['error_code']}",
        ),
        "msal": surfaced(
            429 if msal_call["status_exposed"] else None, None,
            f"raises {msal_call.get('raised')} on the plain-text body" if "raised" in msal_call
            else f"error dict {msal_call.get('error')}",
        ),
        "azure_identity": surfaced(
            identity["status_code"], identity["retry_after_header"],
            f"{identity['raised']} caused by {identity['cause']}",
        ),
    }


def run_throttled(env):
    control = Control(env)
    control.clear_faults()
    graph = asyncio.run(run_graph_throttled(env, control))
    entra = run_entra_throttled(env, control)
    return {
        "versions": versions("msal", "azure-identity", "msgraph-sdk", "microsoft-kiota-http"),
        "graph": graph,
        "entra": entra,
        "surfaces": surfaces(graph, entra),
    }


COMMANDS = {
    "msal": run_msal,
    "graph": run_graph,
    "expired": run_expired,
    "throttled": run_throttled,
}


def main(argv):
    if len(argv) not in (2, 3) or argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[2] if len(argv) == 3 else os.environ.get("MAILDRILL_ENV_FILE")
    if not path:
        print("no environment file: pass it or set MAILDRILL_ENV_FILE", file=sys.stderr)
        return 2
    env = read_env(path)
    try:
        observed = COMMANDS[argv[1]](env)
    except Unexpected as error:
        print(json.dumps({"command": argv[1], "unexpected": str(error)}))
        return 1
    except Exception as error:  # an SDK's error: what it was, then the traceback (no locals)
        status = getattr(error, "response_status_code", None)
        code = getattr(getattr(error, "error", None), "code", None)
        traceback.print_exc()
        print(json.dumps({"command": argv[1], "exception": type(error).__name__,
                          "status": status, "code": code}))
        return 1
    print(json.dumps({"command": argv[1], **observed}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
