//! Just enough MIME to read the header fields the mocks record: `From`, `To`, `Subject`,
//! `Message-ID` and the idempotency key.

/// The header fields of a message (names lower-cased, folded lines joined), in order.
pub fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let head = head.split("\n\n").next().unwrap_or("");
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    fields
}

/// The first value of a header field.
pub fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// `Name <a@b>` or `a@b` to `a@b`.
pub fn bare_address(text: &str) -> String {
    let text = text.trim();
    match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => text[open + 1..close].trim().to_string(),
        _ => text.to_string(),
    }
}

/// The idempotency key header clients may set.
pub const IDEMPOTENCY_HEADER: &str = "x-maildrill-idempotency-key";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_headers_are_joined_and_names_lower_cased() {
        let fields = header_fields(b"Subject: a\r\n b\r\nFrom: A <a@x>\r\n\r\nSubject: body");
        assert_eq!(field(&fields, "subject").as_deref(), Some("a b"));
        assert_eq!(bare_address(&field(&fields, "from").unwrap()), "a@x");
        assert_eq!(fields.len(), 2);
    }
}
