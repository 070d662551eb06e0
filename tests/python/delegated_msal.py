"""msal's confidential client through a multi-tenant app's delegated flow against `maildrill serve`.

Run by tests/python_sdk.rs with serve's env file as the last argument; prints one JSON line of
what msal saw (never a secret, code or token):
  1. the authorization request msal builds (`get_authorization_request_url`, login_hint) is
     answered with a redirect carrying a code;
  2. `acquire_token_by_authorization_code` redeems it (ID token claims checked by msal);
  3. `acquire_token_by_refresh_token` for SMTP.Send with the refresh token it got;
  4. the app's secret is expired through the control API: the refresh fails with
     invalid_client AADSTS7000222;
  5. a new secret is added through the control API, the calendar moved past its propagation:
     the same refresh token works with it.
"""

import json
import re
import sys
import urllib.parse


class Unexpected(Exception):
    pass


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


def aadsts(text):
    found = re.search(r"AADSTS\d+", text or "")
    return found.group(0) if found else None


class Control:
    def __init__(self, env, session):
        self.base = env["MAILDRILL_CONTROL_URL"].rstrip("/")
        self.token = env["MAILDRILL_CONTROL_TOKEN"]
        self.session = session

    def call(self, method, path, body=None, status=200):
        response = self.session.request(
            method, f"{self.base}/{path}", json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        expect(response.status_code == status, f"{method} {path}: {response.status_code}")
        return response.json() if response.content else None


def main():
    import msal
    import requests

    env = read_env(sys.argv[-1])
    session = requests.Session()
    session.verify = env["MAILDRILL_CA_CERT"]
    session.trust_env = False

    def app(secret):
        return msal.ConfidentialClientApplication(
            env["MAILDRILL_CLIENT_ID"],
            client_credential=secret,
            authority=env["MAILDRILL_COMMON_AUTHORITY"],
            validate_authority=False,
            instance_discovery=False,
            http_client=session,
        )

    with open(env["MAILDRILL_USERS"], encoding="utf-8") as file:
        user = file.read().split()[0]
    redirect_uri = env["MAILDRILL_REDIRECT_URI"]
    graph = ["https://graph.microsoft.com/Mail.Send"]
    smtp = ["https://outlook.office.com/SMTP.Send"]
    first = app(env["MAILDRILL_CLIENT_SECRET"])
    url = first.get_authorization_request_url(
        graph + smtp, login_hint=user, redirect_uri=redirect_uri, state="state-1"
    )
    redirect = session.get(url, allow_redirects=False)
    expect(redirect.status_code == 302, f"authorize answered {redirect.status_code}")
    location = redirect.headers["Location"]
    expect(location.startswith(redirect_uri), "redirected elsewhere")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    code = first.acquire_token_by_authorization_code(query["code"], graph, redirect_uri=redirect_uri)
    expect("access_token" in code, f"code: {code.get('error')} {aadsts(code.get('error_description'))}")
    claims = code.get("id_token_claims", {})
    refresh_token = code["refresh_token"]
    refreshed = first.acquire_token_by_refresh_token(refresh_token, smtp)
    expect("access_token" in refreshed, f"refresh: {refreshed.get('error')}")

    control = Control(env, session)
    mine = [a for a in control.call("GET", "apps")["apps"] if a["app_id"] == env["MAILDRILL_CLIENT_ID"]]
    key = [s for s in mine[0]["secrets"] if s["state"] == "valid"][0]["key_id"]
    control.call("POST", f"apps/{env['MAILDRILL_CLIENT_ID']}/secrets/{key}/expire")
    expired = first.acquire_token_by_refresh_token(refresh_token, graph)
    added = control.call(
        "POST", f"apps/{env['MAILDRILL_CLIENT_ID']}/secrets", {"display_name": "rotated"}, status=201
    )
    control.call("POST", "clock/advance", {"by": "11s"})
    second = app(added.pop("secret_text"))
    rotated = second.acquire_token_by_refresh_token(refresh_token, graph)
    # Tenant- and user-level events through the control API, as the timeline's steps.
    tenant = user.split("@")[1]
    control.call("POST", f"tenants/{tenant}/events", {"event": "disable-app"}, status=204)
    disabled = second.acquire_token_by_refresh_token(refresh_token, graph)
    control.call("POST", f"tenants/{tenant}/events", {"event": "enable-app"}, status=204)
    control.call("POST", "clock/advance", {"by": "1s"})
    control.call("POST", f"users/{user}/events", {"event": "revoke-sessions"}, status=204)
    # Other scopes than the refused call's: msal replays a 400 for 60 s to identical requests.
    revoked = second.acquire_token_by_refresh_token(refresh_token, smtp)
    print(json.dumps({
        "versions": {"msal": msal.__version__},
        "state": query.get("state"),
        "session_state": "session_state" in query,
        "code_redeemed": "access_token" in code,
        "id_token": {k: claims.get(k) for k in ("tid", "oid", "preferred_username", "aud")},
        "id_token_iss_is_tenants": claims.get("iss", "").endswith(f"/{claims.get('tid')}/v2.0"),
        "refresh_rotated": refreshed.get("refresh_token") not in (None, refresh_token),
        "expired": {"error": expired.get("error"), "code": aadsts(expired.get("error_description"))},
        "after_rotation": "access_token" in rotated,
        "disabled": {"error": disabled.get("error"), "code": aadsts(disabled.get("error_description"))},
        "revoked": {"error": revoked.get("error"), "code": aadsts(revoked.get("error_description")),
                    "suberror": revoked.get("suberror")},
    }))


if __name__ == "__main__":
    try:
        main()
    except Unexpected as error:
        print(json.dumps({"unexpected": str(error)}))
        sys.exit(1)
