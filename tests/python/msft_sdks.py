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
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        env["MAILDRILL_TENANT_ID"],
        env["MAILDRILL_CLIENT_ID"],
        env["MAILDRILL_CLIENT_SECRET"],
        authority=authority_host(env),
        disable_instance_discovery=True,
        connection_verify=env["MAILDRILL_CA_CERT"],
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


COMMANDS = {"msal": run_msal, "graph": run_graph, "expired": run_expired}


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
