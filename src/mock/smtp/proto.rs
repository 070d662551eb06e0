//! SMTP command parsing: bytes of one command line in, a [`Command`] out. Pure; no I/O, no
//! state. Verbs and parameter keywords are case-insensitive (RFC 5321).

/// ESMTP parameters: keyword (upper-cased) and optional value.
pub type Params = Vec<(String, Option<String>)>;

/// One SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO domain`.
    Helo(String),
    /// `EHLO domain`.
    Ehlo(String),
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// The mechanism, upper-cased.
        mechanism: String,
        /// The initial response, if given on the command line (`=` means empty).
        initial: Option<String>,
    },
    /// `MAIL FROM:<address> [params]`.
    Mail {
        /// The reverse path (empty for `<>`).
        from: String,
        /// ESMTP parameters, keywords upper-cased.
        params: Params,
    },
    /// `RCPT TO:<address> [params]`.
    Rcpt {
        /// The forward path.
        to: String,
        /// ESMTP parameters, keywords upper-cased.
        params: Params,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]`.
    Bdat {
        /// Bytes of the chunk that follow the command line.
        size: usize,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `VRFY string`.
    Vrfy(String),
    /// `QUIT`.
    Quit,
}

/// Why a command line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// An unknown verb (kept, up to a length, for the reply).
    Unknown(String),
    /// A known verb with arguments that do not parse.
    Arguments,
    /// `MAIL` with a bad reverse path.
    Sender,
    /// `RCPT` with a bad forward path.
    Recipient,
}

/// Parses one command line, without its line ending.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let (verb, rest) = match text.find(' ') {
        Some(space) => (&text[..space], text[space + 1..].trim()),
        None => (text, ""),
    };
    let verb_upper = verb.to_ascii_uppercase();
    let no_args = |command: Command| {
        if rest.is_empty() {
            Ok(command)
        } else {
            Err(CommandError::Arguments)
        }
    };
    match verb_upper.as_str() {
        "HELO" | "EHLO" if rest.is_empty() => Err(CommandError::Arguments),
        "HELO" => Ok(Command::Helo(rest.to_string())),
        "EHLO" => Ok(Command::Ehlo(rest.to_string())),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => parse_auth(rest),
        "MAIL" => {
            let (path, params) = parse_path(rest, "FROM:").ok_or(CommandError::Sender)?;
            Ok(Command::Mail { from: path, params })
        }
        "RCPT" => {
            let (path, params) = parse_path(rest, "TO:").ok_or(CommandError::Recipient)?;
            if path.is_empty() {
                return Err(CommandError::Recipient);
            }
            Ok(Command::Rcpt { to: path, params })
        }
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(rest),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "VRFY" => Ok(Command::Vrfy(rest.to_string())),
        "QUIT" => no_args(Command::Quit),
        // The verb is echoed in the reply: keep it printable so no input can inject a line.
        _ => Err(CommandError::Unknown(
            verb.chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .take(32)
                .collect(),
        )),
    }
}

fn parse_auth(rest: &str) -> Result<Command, CommandError> {
    let mut parts = rest.split_ascii_whitespace();
    let mechanism = parts
        .next()
        .ok_or(CommandError::Arguments)?
        .to_ascii_uppercase();
    let initial = parts.next().map(str::to_string);
    if parts.next().is_some() {
        return Err(CommandError::Arguments);
    }
    Ok(Command::Auth { mechanism, initial })
}

fn parse_bdat(rest: &str) -> Result<Command, CommandError> {
    let mut parts = rest.split_ascii_whitespace();
    let size = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(CommandError::Arguments)?;
    let last = match parts.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Arguments),
    };
    if parts.next().is_some() {
        return Err(CommandError::Arguments);
    }
    Ok(Command::Bdat { size, last })
}

/// `FROM:<path> params` (the keyword case-insensitive, a space after the colon tolerated).
fn parse_path(rest: &str, keyword: &str) -> Option<(String, Params)> {
    // Compared as bytes: the line may hold any UTF-8 where the keyword should be.
    let matches = rest
        .as_bytes()
        .get(..keyword.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(keyword.as_bytes()));
    if !matches {
        return None;
    }
    let rest = rest[keyword.len()..].trim_start();
    let (path, params) = if let Some(inner) = rest.strip_prefix('<') {
        let close = inner.find('>')?;
        (&inner[..close], &inner[close + 1..])
    } else {
        match rest.find(' ') {
            Some(space) => (&rest[..space], &rest[space..]),
            None => (rest, ""),
        }
    };
    let path = path.trim();
    if !path.is_empty() && !valid_address(path) {
        return None;
    }
    let params = params
        .split_ascii_whitespace()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v.to_string())),
            None => (p.to_ascii_uppercase(), None),
        })
        .collect();
    Some((path.to_string(), params))
}

/// `local@domain` with no spaces or angle brackets (source routes are not accepted).
fn valid_address(path: &str) -> bool {
    let Some((local, domain)) = path.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !path.contains([' ', '<', '>', ',', ':'])
        && !path.chars().any(char::is_control)
        && !domain.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_cut_inside_a_character_is_no_keyword() {
        // Found by the fuzzer: the keyword's length fell inside `é`.
        assert!(parse_command("RCPT TOé".as_bytes()).is_err());
        assert!(parse_command("MAIL FROMé".as_bytes()).is_err());
        assert!(parse_command(b"MAIL FROM:<a\rb@x.example>").is_err());
    }

    #[test]
    fn verbs_and_keywords_are_case_insensitive() {
        assert_eq!(
            parse_command(b"ehlo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(
            parse_command(b"mail from:<a@x.example> size=100 BODY=8bitmime"),
            Ok(Command::Mail {
                from: "a@x.example".into(),
                params: vec![
                    ("SIZE".into(), Some("100".into())),
                    ("BODY".into(), Some("8bitmime".into()))
                ],
            })
        );
        assert_eq!(
            parse_command(b"RCPT TO: <b@y.example>"),
            Ok(Command::Rcpt {
                to: "b@y.example".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse_command(b"MAIL FROM:<>"),
            Ok(Command::Mail {
                from: String::new(),
                params: vec![]
            })
        );
    }

    #[test]
    fn auth_takes_an_optional_initial_response() {
        assert_eq!(
            parse_command(b"AUTH xoauth2 dXNlcj0="),
            Ok(Command::Auth {
                mechanism: "XOAUTH2".into(),
                initial: Some("dXNlcj0=".into())
            })
        );
        assert_eq!(
            parse_command(b"AUTH LOGIN"),
            Ok(Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            })
        );
        assert_eq!(parse_command(b"AUTH"), Err(CommandError::Arguments));
    }

    #[test]
    fn bad_lines_say_why() {
        assert_eq!(
            parse_command(b"XYZZY now"),
            Err(CommandError::Unknown("XYZZY".into()))
        );
        assert_eq!(parse_command(b"MAIL TO:<a@b>"), Err(CommandError::Sender));
        assert_eq!(parse_command(b"RCPT TO:<>"), Err(CommandError::Recipient));
        assert_eq!(
            parse_command(b"RCPT TO:<no-at-sign>"),
            Err(CommandError::Recipient)
        );
        assert_eq!(parse_command(b"BDAT x"), Err(CommandError::Arguments));
        assert_eq!(
            parse_command(b"BDAT 10 LAST"),
            Ok(Command::Bdat {
                size: 10,
                last: true
            })
        );
        assert_eq!(parse_command(b"DATA now"), Err(CommandError::Arguments));
        assert_eq!(
            parse_command(b"\xff\xfe"),
            Err(CommandError::Unknown("??".into()))
        );
        // Echoed verbs stay printable: no reply can carry an injected line.
        assert_eq!(
            parse_command(b"A\rB\0"),
            Err(CommandError::Unknown("A?B?".into()))
        );
    }
}
