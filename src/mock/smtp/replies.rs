//! The SMTP reply catalogue, loaded from `fixtures/wire/smtp.toml`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::mock::wire::Vars;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpFile {
    greeting: String,
    ehlo_first: String,
    extensions_plain: Vec<String>,
    extensions_tls: Vec<String>,
    max_message_size: usize,
    trailer: String,
    region: String,
    replies: BTreeMap<String, String>,
    #[expect(dead_code, reason = "read by people reviewing the catalogue")]
    choices: BTreeMap<String, String>,
}

fn file() -> &'static SmtpFile {
    static FILE: OnceLock<SmtpFile> = OnceLock::new();
    FILE.get_or_init(|| {
        toml::from_str(include_str!("../../../fixtures/wire/smtp.toml"))
            .expect("fixtures/wire/smtp.toml is valid; smtp::replies::tests load it")
    })
}

/// Every reply key the session uses; a test checks each has a catalogue entry.
pub const KEYS: [&str; 37] = [
    "helo",
    "starttls",
    "auth_ok",
    "auth_failed",
    "basic_auth_disabled",
    "smtp_auth_disabled",
    "not_authenticated",
    "mail_ok",
    "rcpt_ok",
    "data_go",
    "bdat_ok",
    "queued",
    "quit",
    "rset",
    "noop",
    "vrfy",
    "sender_thread_limit",
    "quota_exceeded",
    "send_as_denied",
    "service_unavailable",
    "unknown_command",
    "line_too_long",
    "need_hello",
    "need_mail",
    "need_rcpt",
    "sender_already",
    "already_tls",
    "already_authenticated",
    "auth_in_transaction",
    "unsupported_mechanism",
    "bad_arguments",
    "bad_sender",
    "bad_recipient",
    "bad_base64",
    "auth_cancelled",
    "too_big",
    "bdat_mixed",
];

/// A single-line reply by key, with CRLF.
pub fn reply(key: &str, vars: &Vars) -> String {
    let template = file()
        .replies
        .get(key)
        .map_or("451 4.3.0 Internal error", String::as_str);
    let mut line = one_line(vars.fill(template));
    line.push_str("\r\n");
    line
}

/// RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets with its CRLF, and it holds
/// no other line break. A reply that quotes the client (an address, a `Message-ID`) keeps to
/// that: control characters become spaces, and a long line is cut at a character boundary.
fn one_line(line: String) -> String {
    const MAX: usize = 510;
    let mut line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX {
        let mut cut = MAX;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

/// Whether `key` is in the catalogue (for `respond` faults).
pub fn has(key: &str) -> bool {
    file().replies.contains_key(key)
}

/// The greeting line, with CRLF.
pub fn greeting(vars: &Vars) -> String {
    format!("{}\r\n", one_line(vars.fill(&file().greeting)))
}

/// The multi-line EHLO reply, before or after TLS.
pub fn ehlo(vars: &Vars, tls_active: bool, offer_starttls: bool) -> String {
    let file = file();
    let extensions: Vec<&String> = if tls_active {
        file.extensions_tls.iter().collect()
    } else {
        file.extensions_plain
            .iter()
            .filter(|e| offer_starttls || e.as_str() != "STARTTLS")
            .collect()
    };
    let mut out = format!("250-{}\r\n", vars.fill(&file.ehlo_first));
    for (i, extension) in extensions.iter().enumerate() {
        let separator = if i + 1 == extensions.len() { ' ' } else { '-' };
        out.push_str(&format!("250{separator}{extension}\r\n"));
    }
    out
}

/// The failure trailer template (`[HOST.REGION.PROD.OUTLOOK.COM time id]`).
pub fn trailer_template() -> &'static str {
    &file().trailer
}

/// The region part of host names.
pub fn region() -> &'static str {
    &file().region
}

/// The advertised maximum message size.
pub fn max_message_size() -> usize {
    file().max_message_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_key_is_in_the_catalogue() {
        for key in KEYS {
            assert!(has(key), "fixtures/wire/smtp.toml lacks {key}");
        }
        assert_eq!(
            file().replies.len(),
            KEYS.len(),
            "a catalogue entry is unused"
        );
    }

    #[test]
    fn ehlo_offers_auth_only_after_tls() {
        let vars = Vars::default()
            .set("fqdn", "H.outlook.office365.com")
            .set("client_ip", "1.2.3.4");
        let plain = ehlo(&vars, false, true);
        assert!(plain.contains("250-STARTTLS\r\n") && !plain.contains("AUTH"));
        assert!(plain.ends_with("250 SMTPUTF8\r\n"));
        let tls = ehlo(&vars, true, true);
        assert!(tls.contains("250-AUTH LOGIN XOAUTH2\r\n") && !tls.contains("STARTTLS"));
        assert!(tls.starts_with("250-H.outlook.office365.com Hello [1.2.3.4]\r\n"));
    }
}
