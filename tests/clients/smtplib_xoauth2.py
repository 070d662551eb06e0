"""Python's smtplib against `maildrill serve`: a token from the mock token endpoint, then
STARTTLS with the generated CA and AUTH XOAUTH2, then one message. Reads the serve env file's
variables from the environment; prints the refused recipients ({} when all were accepted)."""
import base64, json, os, smtplib, ssl, urllib.parse, urllib.request
env = os.environ
ctx = ssl.create_default_context(cafile=env["MAILDRILL_CA_CERT"])
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": env["MAILDRILL_CLIENT_ID"],
    "client_secret": env["MAILDRILL_CLIENT_SECRET"], "scope": "https://outlook.office365.com/.default"}).encode()
token = json.load(urllib.request.urlopen(env["MAILDRILL_TOKEN_URL"], form, context=ctx))["access_token"]
s = smtplib.SMTP(env["MAILDRILL_SMTP_HOST"], int(env["MAILDRILL_SMTP_PORT"]), local_hostname="client.example")
s.starttls(context=ctx); s.ehlo("client.example")
s.auth("XOAUTH2", lambda challenge=None: f"user={env['MAILDRILL_MAILBOX']}\x01auth=Bearer {token}\x01\x01", initial_response_ok=True)
print(s.sendmail(env["MAILDRILL_MAILBOX"], ["customer@example.com"], f"From: {env['MAILDRILL_MAILBOX']}\r\nTo: customer@example.com\r\nSubject: smtplib\r\n\r\nhi\r\n"))
print(s.quit())
