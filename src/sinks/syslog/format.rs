//! How an event is written as a syslog message: RFC 5424 with the event in structured data
//! and the CloudEvent as the message, or ArcSight CEF or QRadar LEEF 2.0 after an RFC 5424
//! header. Pure functions: the transport frames and sends what they make.
//!
//! Control characters never leave as they are: receivers escape them (rsyslog writes `#012`)
//! or end a record at them. Where a format has an escape for one it is used (CEF's `\n` and
//! `\r`, JSON's `\u0000`); otherwise CR, LF and TAB become a space and any other control
//! character becomes U+FFFD. The CloudEvent in an RFC 5424 message is exact.

use crate::events::outbox::Stored;
use crate::events::{Event, TYPE_PREFIX};
use crate::model::{FindingSeverity, SyslogFormat, SyslogSettings};
use crate::sinks::SinkProblem;

const APP_NAME: &str = "gitward";
const VENDOR: &str = "gitward";
const PRODUCT: &str = "gitward";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Starts an RFC 5424 MSG that is UTF-8.
const BOM: &str = "\u{feff}";
/// Ends a message cut to fit a datagram.
pub const MARK: &str = "...";
/// Stands for a character a field cannot carry.
const REPLACEMENT: char = '\u{fffd}';
/// Longest CEF Name, as the CEF specification bounds it; the whole message is in `msg`.
const CEF_NAME_CHARS: usize = 512;
/// Longest event type in a CEF or LEEF header (gitward's are far shorter).
const HEADER_ID_CHARS: usize = 64;
/// Smallest datagram a syslog receiver must take (RFC 5424 §6.1).
pub const MIN_MESSAGE_BYTES: usize = 480;

/// The LEEF 2.0 attribute delimiter: the character and how the header spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiter {
    pub char: char,
    pub spelled: String,
}

impl Delimiter {
    /// One character, or a hex code `xHH` / `0xHH` (1–4 digits) as LEEF 2.0 writes it. A
    /// delimiter LEEF's own syntax uses, a control character other than TAB, a space, a
    /// letter or a digit would split or corrupt attributes, and is refused.
    pub fn parse(text: &str) -> Result<Delimiter, SinkProblem> {
        let mut chars = text.chars();
        let char = match (chars.next(), chars.next()) {
            (Some(c), None) => c,
            _ => hex_code(text).ok_or_else(|| {
                SinkProblem(format!(
                    "syslog.delimiter `{}` is neither one character nor a hex code like `x09` \
                     or `0x5E`",
                    text.escape_debug()
                ))
            })?,
        };
        let refused = |why: &str| {
            Err(SinkProblem(format!(
                "syslog.delimiter `{}` cannot separate LEEF attributes: {why}; `^` (the \
                 default) or `x09` (TAB) are usual",
                text.escape_debug()
            )))
        };
        match char {
            '|' => refused("`|` separates the LEEF header fields"),
            '=' => refused("`=` separates an attribute's name from its value"),
            '\t' => Ok(Delimiter {
                char,
                spelled: text.to_owned(),
            }),
            c if c.is_control() => refused("it is a control character"),
            c if c.is_whitespace() => refused("values hold spaces"),
            c if c.is_alphanumeric() => {
                refused("attribute names and values hold letters and digits")
            }
            _ => Ok(Delimiter {
                char,
                spelled: text.to_owned(),
            }),
        }
    }
}

fn hex_code(text: &str) -> Option<char> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .or_else(|| text.strip_prefix('x'))
        .or_else(|| text.strip_prefix('X'))?;
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    char::from_u32(u32::from_str_radix(digits, 16).ok()?)
}

/// Writes events as syslog messages of one format.
#[derive(Debug, Clone)]
pub struct Encoder {
    format: SyslogFormat,
    facility: u8,
    sd_id: String,
    delimiter: Delimiter,
    hostname: String,
    procid: String,
}

impl Encoder {
    /// An encoder for `settings`, on host `hostname` in process `pid`.
    pub fn new(
        settings: &SyslogSettings,
        hostname: &str,
        pid: u32,
    ) -> Result<Encoder, SinkProblem> {
        if settings.facility > 23 {
            return Err(SinkProblem(format!(
                "syslog.facility {} is not a syslog facility (0–23)",
                settings.facility
            )));
        }
        if settings.enterprise_id == 0 {
            return Err(SinkProblem(
                "syslog.enterpriseId 0 is not an IANA private enterprise number".to_owned(),
            ));
        }
        Ok(Encoder {
            format: settings.format,
            facility: settings.facility,
            sd_id: format!("gitward@{}", settings.enterprise_id),
            delimiter: Delimiter::parse(&settings.delimiter)?,
            hostname: header_field(hostname, 255),
            procid: pid.to_string(),
        })
    }

    /// The message for `stored`, at most `limit` bytes when given (a datagram): a longer one
    /// is cut at a character boundary and ends in [`MARK`], still a message of its format.
    pub fn encode(&self, stored: &Stored, limit: Option<usize>) -> String {
        let message = match self.format {
            SyslogFormat::Rfc5424 => self.rfc5424(stored, limit),
            SyslogFormat::Cef => self.cef(&stored.event, limit),
            SyslogFormat::Leef => self.leef(&stored.event, limit),
        };
        match limit {
            // Only a header longer than the limit gets here, which 480 bytes always hold.
            Some(limit) if message.len() > limit => {
                message[..floor_boundary(&message, limit)].to_owned()
            }
            _ => message,
        }
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID`.
    fn header(&self, event: &Event) -> String {
        format!(
            "<{}>1 {} {} {APP_NAME} {} {}",
            u16::from(self.facility) * 8 + u16::from(syslog_severity(event.data.severity)),
            event.time.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
            self.hostname,
            self.procid,
            header_field(short_type(event), 32),
        )
    }

    /// `HEADER [gitward@<n> id=".." ...] BOM<CloudEvent JSON>`. Over UDP the JSON is cut;
    /// structured data stays whole, or loses its last parameters when even they do not fit.
    fn rfc5424(&self, stored: &Stored, limit: Option<usize>) -> String {
        let header = self.header(&stored.event);
        let params = sd_params(&stored.event);
        let mut kept = params.len();
        loop {
            let mut head = format!("{header} [{}", self.sd_id);
            for (name, value) in &params[..kept] {
                head.push_str(&format!(" {name}=\"{}\"", sd_value(value)));
            }
            head.push_str("] ");
            head.push_str(BOM);
            if kept == 0 || limit.is_none_or(|l| head.len() + MARK.len() <= l) {
                let body = Body {
                    text: &stored.json,
                    pairs: &[],
                    separator: 0,
                    escaped: false,
                };
                return fit(head, body, limit);
            }
            kept -= 1;
        }
    }

    /// `HEADER - CEF:0|gitward|gitward|<version>|<type>|<message>|<0-10>|<extension>`. In a
    /// datagram the name (the message, whole in `msg`) is shortened until the header takes
    /// at most half of it: the extension says what the event is about.
    fn cef(&self, event: &Event, limit: Option<usize>) -> String {
        let kind = short_type(event);
        let message = if event.data.message.is_empty() {
            kind
        } else {
            &event.data.message
        };
        let extension = cef_extension(event);
        let mut name_chars = CEF_NAME_CHARS;
        loop {
            let head = format!(
                "{} - CEF:0|{VENDOR}|{PRODUCT}|{VERSION}|{}|{}|{}|",
                self.header(event),
                cef_header(&cut_chars(kind, HEADER_ID_CHARS)),
                cef_header(&cut_chars(message, name_chars)),
                cef_severity(event.data.severity),
            );
            if name_chars <= 1 || limit.is_none_or(|l| head.len() <= l / 2) {
                return fit(head, extension.body(true), limit);
            }
            name_chars /= 2;
        }
    }

    /// `HEADER - LEEF:2.0|gitward|gitward|<version>|<type>|<delimiter>|k=v<d>k=v...`.
    fn leef(&self, event: &Event, limit: Option<usize>) -> String {
        let head = format!(
            "{} - LEEF:2.0|{VENDOR}|{PRODUCT}|{VERSION}|{}|{}|",
            self.header(event),
            leef_header(&cut_chars(short_type(event), HEADER_ID_CHARS)),
            self.delimiter.spelled,
        );
        let d = self.delimiter.char;
        let host = (self.hostname != "-").then_some(self.hostname.as_str());
        let mut attributes = Pairs::new(d);
        for (key, value) in leef_attributes(event, host) {
            attributes.push(key, &leef_value(&value, d));
        }
        fit(head, attributes.body(false), limit)
    }
}

/// What follows a message's head: text that may be cut, made of `key=value` pairs when
/// `pairs` holds where each pair and its value start.
struct Body<'a> {
    text: &'a str,
    pairs: &'a [(usize, usize)],
    /// Bytes between two pairs.
    separator: usize,
    /// Whether the text uses `\` escapes, which a cut must not split.
    escaped: bool,
}

/// `key=value` pairs joined by a separator, remembering where each starts.
struct Pairs {
    text: String,
    separator: char,
    starts: Vec<(usize, usize)>,
}

impl Pairs {
    fn new(separator: char) -> Pairs {
        Pairs {
            text: String::new(),
            separator,
            starts: Vec::new(),
        }
    }

    /// Adds `key=value`, `value` already escaped; an empty value is left out.
    fn push(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        if !self.text.is_empty() {
            self.text.push(self.separator);
        }
        let start = self.text.len();
        self.text.push_str(key);
        self.text.push('=');
        self.starts.push((start, self.text.len()));
        self.text.push_str(value);
    }

    fn body(&self, escaped: bool) -> Body<'_> {
        Body {
            text: &self.text,
            pairs: &self.starts,
            separator: self.separator.len_utf8(),
            escaped,
        }
    }
}

/// `head` then as much of `body` as `limit` leaves room for; a cut body ends in [`MARK`]. A
/// cut falls inside a value — never inside a character, an escape or a key (a pair whose
/// value would start past the cut is left out).
fn fit(mut head: String, body: Body<'_>, limit: Option<usize>) -> String {
    let text = body.text;
    match limit {
        Some(limit) if head.len() + text.len() > limit => {
            let mut cut = floor_boundary(text, limit.saturating_sub(head.len() + MARK.len()));
            if body.escaped {
                let slashes = text[..cut]
                    .bytes()
                    .rev()
                    .take_while(|b| *b == b'\\')
                    .count();
                cut -= slashes % 2;
            }
            let pair = body.pairs.iter().rev().find(|(start, _)| *start <= cut);
            if let Some((start, value)) = pair
                && cut < *value
            {
                cut = start.saturating_sub(body.separator);
            }
            head.push_str(&text[..cut]);
            head.push_str(MARK);
            head
        }
        _ => {
            head.push_str(text);
            head
        }
    }
}

/// The largest index ≤ `at` that is a character boundary of `text`.
fn floor_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

/// At most `max` characters of `text`; a cut one ends in [`MARK`] (within `max`).
fn cut_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(MARK.len());
    let mut cut: String = text.chars().take(keep).collect();
    cut.push_str(MARK);
    cut
}

/// The event type without `dev.gitward.`, like `certificate.issued`.
pub fn short_type(event: &Event) -> &str {
    event
        .type_
        .strip_prefix(TYPE_PREFIX)
        .unwrap_or(&event.type_)
}

/// An RFC 5424 header field: printable US-ASCII, at most `max` of them, `-` when none.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// RFC 5424 severity: critical is Critical (2) ... info is Informational (6).
pub fn syslog_severity(severity: FindingSeverity) -> u8 {
    match severity {
        FindingSeverity::Critical => 2,
        FindingSeverity::High => 3,
        FindingSeverity::Medium => 4,
        FindingSeverity::Low => 5,
        FindingSeverity::Info => 6,
    }
}

/// CEF and LEEF severity, 0–10.
pub fn cef_severity(severity: FindingSeverity) -> u8 {
    match severity {
        FindingSeverity::Info => 1,
        FindingSeverity::Low => 3,
        FindingSeverity::Medium => 5,
        FindingSeverity::High => 8,
        FindingSeverity::Critical => 10,
    }
}

/// A control character a field cannot carry: CR, LF and TAB as a space, others as U+FFFD.
fn plain(c: char) -> char {
    match c {
        '\r' | '\n' | '\t' => ' ',
        c if c.is_control() => REPLACEMENT,
        c => c,
    }
}

fn sd_params(event: &Event) -> Vec<(&'static str, String)> {
    let data = &event.data;
    let mut params = vec![
        ("id", event.id.clone()),
        ("type", short_type(event).to_owned()),
        ("subject", event.subject.clone()),
        ("severity", data.severity.as_str().to_owned()),
        ("fingerprint", data.fingerprint.clone()),
    ];
    if let Some(commit) = &data.commit {
        params.push(("commit", commit.sha.clone()));
    }
    if let Some(resource) = &data.resource {
        params.push(("resource", format!("{}/{}", resource.kind, resource.name)));
    }
    params
}

/// An RFC 5424 PARAM-VALUE: `"`, `\` and `]` escaped with `\`.
pub fn sd_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(plain(c));
    }
    out
}

/// A CEF header field: `\` then `|` escaped; on one line.
pub fn cef_header(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '|') {
            out.push('\\');
        }
        out.push(plain(c));
    }
    out
}

/// A CEF extension value: `\` then `=` escaped, newlines as `\n` and `\r`.
pub fn cef_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(plain(c)),
        }
    }
    out
}

/// The event as CEF extension pairs, from the CEF dictionary where a key fits, the
/// message last (a datagram cuts it, not the rest). Empty values are left out.
fn cef_extension(event: &Event) -> Pairs {
    let data = &event.data;
    let mut pairs = vec![
        ("rt", event.time.timestamp_millis().to_string()),
        ("externalId", event.id.clone()),
        ("cat", short_type(event).to_owned()),
    ];
    // A custom field goes with its label, or not at all.
    let mut custom = |key: &'static str, label: &'static str, value: String| {
        if !value.is_empty() {
            pairs.push((key, label.to_owned()));
            pairs.push((&key[..key.len() - "Label".len()], value));
        }
    };
    custom("cs1Label", "subject", event.subject.clone());
    custom("cs2Label", "fingerprint", data.fingerprint.clone());
    if let Some(commit) = &data.commit {
        custom("cs3Label", "commit", commit.sha.clone());
    }
    custom("cs4Label", "compliance", data.compliance.join(","));
    if let Some(resource) = &data.resource {
        custom(
            "cs5Label",
            "resource",
            format!("{}/{}", resource.kind, resource.name),
        );
        if let Some(line) = resource.line {
            custom("cn1Label", "line", line.to_string());
        }
    }
    custom(
        "cs6Label",
        "policy",
        policy(event).unwrap_or_default().to_owned(),
    );
    custom("flexString1Label", "source", event.source.clone());
    if let Some(commit) = &data.commit {
        pairs.push(("suser", commit.author.clone()));
    }
    if let Some(file) = data.resource.as_ref().and_then(|r| r.file.clone()) {
        pairs.push(("fname", file));
    }
    pairs.push(("msg", data.message.clone()));
    let mut out = Pairs::new(' ');
    for (key, value) in &pairs {
        out.push(key, &cef_value(value));
    }
    out
}

/// The policy a finding's event is about.
fn policy(event: &Event) -> Option<&str> {
    event
        .data
        .details
        .get("policy")
        .and_then(|p| p.as_str())
        .filter(|p| !p.is_empty())
}

/// A LEEF header field: never `|`, on one line.
fn leef_header(text: &str) -> String {
    text.chars()
        .map(|c| if c == '|' { REPLACEMENT } else { plain(c) })
        .collect()
}

/// A LEEF value: LEEF has no escape, so CR, LF and TAB become a space and the delimiter
/// (and any other control character) becomes U+FFFD.
pub fn leef_value(text: &str, delimiter: char) -> String {
    text.chars()
        .map(|c| match c {
            '\r' | '\n' | '\t' => ' ',
            c if c == delimiter => REPLACEMENT,
            c => plain(c),
        })
        .collect()
}

/// The event as LEEF attributes: QRadar's predefined keys where one fits (`devTime` in epoch
/// milliseconds, as no `devTimeFormat` is given), custom keys for the rest, the message last.
fn leef_attributes(event: &Event, host: Option<&str>) -> Vec<(&'static str, String)> {
    let data = &event.data;
    let mut attributes = vec![
        ("devTime", event.time.timestamp_millis().to_string()),
        ("cat", short_type(event).to_owned()),
        ("sev", cef_severity(data.severity).to_string()),
        ("eventId", event.id.clone()),
        ("subject", event.subject.clone()),
        ("fingerprint", data.fingerprint.clone()),
    ];
    if let Some(host) = host {
        attributes.push(("identHostName", host.to_owned()));
    }
    if let Some(commit) = &data.commit {
        attributes.push(("usrName", commit.author.clone()));
        attributes.push(("commit", commit.sha.clone()));
    }
    if let Some(resource) = &data.resource {
        attributes.push(("resource", format!("{}/{}", resource.kind, resource.name)));
        if let Some(file) = &resource.file {
            attributes.push(("file", file.clone()));
        }
    }
    if let Some(policy) = policy(event) {
        attributes.push(("policy", policy.to_owned()));
    }
    attributes.push(("compliance", data.compliance.join(",")));
    attributes.push(("source", event.source.clone()));
    attributes.push(("msg", data.message.clone()));
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CommitRef, Draft, EventData, ResourceRef};
    use crate::model::EventType;

    /// Every character a receiver or a parser might trip on.
    const HOSTILE: &str = "a|b=c\\d]e\"f\r\ng\0h\ti é 日本 🔒 ^x";

    fn stored(message: &str, severity: FindingSeverity) -> Stored {
        let mut details = serde_json::Map::new();
        details.insert("policy".into(), "tls-min".into());
        let event = Draft {
            kind: EventType::PolicyViolation,
            anchor: "c0ffee".into(),
            subject: "Certificate/web".into(),
            data: EventData {
                severity,
                resource: Some(ResourceRef {
                    kind: "Certificate".into(),
                    name: "web".into(),
                    file: Some("certs/web.yaml".into()),
                    line: Some(7),
                }),
                commit: Some(CommitRef {
                    sha: "c0ffee".into(),
                    author: "Ada <ada@example.com>".into(),
                }),
                message: message.into(),
                details,
                compliance: vec!["PCI-DSS 4.2.1".into(), "SOC2 CC6.7".into()],
                fingerprint: "f1".into(),
                condition: None,
            },
        }
        .seal(
            "https://git.example.com/pki.git",
            chrono::DateTime::parse_from_rfc3339("2003-10-11T22:14:15.003Z")
                .unwrap()
                .to_utc(),
        );
        Stored {
            seq: 1,
            json: serde_json::to_string(&event).unwrap(),
            event,
        }
    }

    fn encoder(format: SyslogFormat, delimiter: &str) -> Encoder {
        let settings = SyslogSettings {
            format,
            delimiter: delimiter.into(),
            ..SyslogSettings::default()
        };
        Encoder::new(&settings, "build-7.example.com", 4242).unwrap()
    }

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/tests/fixtures/syslog/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn rfc5424_carries_the_event_in_structured_data_and_the_cloudevent_as_the_message() {
        let event = stored("TLS 1.0 allowed", FindingSeverity::High);
        let line = encoder(SyslogFormat::Rfc5424, "^").encode(&event, None);
        let id = &event.event.id;
        assert_eq!(
            line,
            format!(
                "<83>1 2003-10-11T22:14:15.003000Z build-7.example.com gitward 4242 \
                 policy.violation [gitward@32473 id=\"{id}\" type=\"policy.violation\" \
                 subject=\"Certificate/web\" severity=\"high\" fingerprint=\"f1\" \
                 commit=\"c0ffee\" resource=\"Certificate/web\"] \u{feff}{}",
                event.json
            )
        );
    }

    #[test]
    fn priority_is_facility_and_severity() {
        let mut settings = SyslogSettings::default();
        for (severity, code) in [
            (FindingSeverity::Critical, 2),
            (FindingSeverity::High, 3),
            (FindingSeverity::Medium, 4),
            (FindingSeverity::Low, 5),
            (FindingSeverity::Info, 6),
        ] {
            for facility in [0u8, 4, 10, 23] {
                settings.facility = facility;
                let line = Encoder::new(&settings, "h", 1)
                    .unwrap()
                    .encode(&stored("m", severity), None);
                let pri = u16::from(facility) * 8 + code;
                assert!(line.starts_with(&format!("<{pri}>1 ")), "{line}");
            }
        }
        settings.facility = 24;
        assert!(Encoder::new(&settings, "h", 1).is_err());
        settings.facility = 10;
        settings.enterprise_id = 0;
        assert!(Encoder::new(&settings, "h", 1).is_err());
    }

    #[test]
    fn header_fields_are_printable_ascii_within_their_lengths() {
        let settings = SyslogSettings::default();
        let host = |name: &str| {
            let line = Encoder::new(&settings, name, 1)
                .unwrap()
                .encode(&stored("m", FindingSeverity::Low), None);
            line.split(' ').nth(2).unwrap().to_owned()
        };
        assert_eq!(host("web 01.é.example"), "web01..example");
        assert_eq!(host(""), "-");
        assert_eq!(host("\u{e9}\u{65e5}"), "-");
        assert_eq!(host(&"h".repeat(300)).len(), 255);
        let mut event = stored("m", FindingSeverity::Low);
        event.event.type_ = format!("{TYPE_PREFIX}{}", "x y".repeat(40));
        let line = encoder(SyslogFormat::Rfc5424, "^").encode(&event, None);
        assert_eq!(line.split(' ').nth(5).unwrap(), "xyxy".repeat(8));
    }

    #[test]
    fn structured_data_values_escape_quote_backslash_and_bracket() {
        assert_eq!(sd_value(r#"a"b\c]d[e=f"#), r#"a\"b\\c\]d[e=f"#);
        assert_eq!(
            sd_value("a\r\nb\tc\0d\u{1b}é🔒"),
            "a  b c\u{fffd}d\u{fffd}é🔒"
        );
        let mut event = stored(HOSTILE, FindingSeverity::Low);
        event.event.subject = HOSTILE.into();
        let line = encoder(SyslogFormat::Rfc5424, "^").encode(&event, None);
        assert!(line.contains(&format!("subject=\"{}\"", sd_value(HOSTILE))));
        // The CloudEvent is exact: JSON escapes what syslog cannot carry.
        assert!(line.ends_with(&format!("\u{feff}{}", event.json)));
        assert!(!line.contains(['\0', '\r', '\n', '\t']));
    }

    #[test]
    fn a_datagram_cuts_the_message_never_a_character_nor_the_structured_data() {
        let big = "é日本🔒x".repeat(1024 * 1024 / 10);
        let event = stored(&big, FindingSeverity::Critical);
        let whole = encoder(SyslogFormat::Rfc5424, "^").encode(&event, None);
        let sd_end = whole.find("] \u{feff}").unwrap() + 2;
        for limit in [480, 481, 482, 483, 700, 2048, 65_000] {
            let line = encoder(SyslogFormat::Rfc5424, "^").encode(&event, Some(limit));
            assert!(
                line.len() <= limit && line.len() > limit - 4,
                "{limit}: {}",
                line.len()
            );
            assert!(line.ends_with(MARK));
            assert_eq!(
                line[..sd_end],
                whole[..sd_end],
                "structured data kept whole"
            );
            assert!(whole.starts_with(&line[..line.len() - MARK.len()]));
        }
        // A message that fits is not touched.
        let small = stored("short", FindingSeverity::Low);
        let line = encoder(SyslogFormat::Rfc5424, "^").encode(&small, Some(2048));
        assert_eq!(
            line,
            encoder(SyslogFormat::Rfc5424, "^").encode(&small, None)
        );
    }

    #[test]
    fn structured_data_too_big_for_a_datagram_keeps_its_first_parameters() {
        let mut event = stored("m", FindingSeverity::Low);
        event.event.data.fingerprint = "f".repeat(600);
        let line = encoder(SyslogFormat::Rfc5424, "^").encode(&event, Some(480));
        assert!(line.len() <= 480, "{}", line.len());
        assert!(line.contains("subject=\"Certificate/web\" severity=\"low\"] \u{feff}{"));
        assert!(!line.contains("fingerprint="));
        assert!(line.ends_with(MARK));
    }

    /// A CEF line split as the CEF specification says: seven `|`-separated header fields
    /// (`\|` and `\\` escaped) and `key=value` pairs (`\=`, `\\`, `\n`, `\r` escaped).
    fn parse_cef(line: &str) -> (Vec<String>, Vec<(String, String)>) {
        let start = line.find("CEF:").unwrap();
        let mut chars = line[start..].chars();
        let mut header = vec![String::new()];
        while header.len() < 8 {
            match chars.next() {
                Some('\\') => header.last_mut().unwrap().extend(chars.next()),
                Some('|') => header.push(String::new()),
                Some(c) => header.last_mut().unwrap().push(c),
                None => break,
            }
        }
        let extension = header.pop().unwrap_or_default() + chars.as_str();
        // A key starts after a space and runs to an unescaped `=`.
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut raw = String::new();
        let mut chars = extension.chars().peekable();
        let mut escaped = false;
        while let Some(c) = chars.next() {
            if !escaped && c == '=' {
                let cut = raw.rfind(' ').map_or(0, |i| i + 1);
                let key = raw.split_off(cut);
                if let Some(last) = pairs.last_mut() {
                    last.1 = unescape_cef(raw.trim_end_matches(' '));
                }
                pairs.push((key, String::new()));
                raw.clear();
                continue;
            }
            escaped = !escaped && c == '\\';
            raw.push(c);
            if chars.peek().is_none()
                && let Some(last) = pairs.last_mut()
            {
                last.1 = unescape_cef(&raw);
            }
        }
        (header, pairs)
    }

    fn unescape_cef(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match (c, c == '\\') {
                (_, true) => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some(other) => out.push(other),
                    None => {}
                },
                (c, false) => out.push(c),
            }
        }
        out
    }

    #[test]
    fn the_cef_reader_of_these_tests_reads_the_specifications_examples() {
        for example in fixture("cef-examples.json").as_array().unwrap() {
            let (header, pairs) = parse_cef(example["line"].as_str().unwrap());
            let expect = &example["expect"];
            assert_eq!(header[5], expect["name"].as_str().unwrap());
            for (key, value) in expect["extension"].as_object().unwrap() {
                let got = pairs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str());
                assert_eq!(got, value.as_str(), "{key}");
            }
        }
    }

    #[test]
    fn cef_escapes_as_the_specifications_examples() {
        // The fixture lines' escaped header and extension values.
        assert_eq!(
            cef_header("detected a | in message"),
            r"detected a \| in message"
        );
        assert_eq!(
            cef_header(r"detected a \ in packet"),
            r"detected a \\ in packet"
        );
        assert_eq!(
            cef_header("detected a = in message"),
            "detected a = in message"
        );
        assert_eq!(cef_value("blocked a |"), "blocked a |");
        assert_eq!(cef_value(r"blocked a \"), r"blocked a \\");
        assert_eq!(cef_value("blocked a ="), r"blocked a \=");
        assert_eq!(cef_value("a\r\nb\tc\0"), "a\\r\\nb c\u{fffd}");
        assert_eq!(cef_header("a\r\nb|"), "a  b\\|");
    }

    #[test]
    fn cef_carries_the_event_in_dictionary_keys() {
        let event = stored(HOSTILE, FindingSeverity::Critical);
        let line = encoder(SyslogFormat::Cef, "^").encode(&event, None);
        assert!(
            line.starts_with(
                "<82>1 2003-10-11T22:14:15.003000Z build-7.example.com gitward 4242 \
                 policy.violation - CEF:0|gitward|gitward|"
            ),
            "{line}"
        );
        let (header, pairs) = parse_cef(&line);
        let flat = |s: &str| s.replace(['\r', '\n', '\t'], " ").replace('\0', "\u{fffd}");
        assert_eq!(header[..4], ["CEF:0", "gitward", "gitward", VERSION]);
        assert_eq!(header[4], "policy.violation");
        assert_eq!(header[5], flat(HOSTILE));
        assert_eq!(header[6], "10");
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{key} in {pairs:?}"))
        };
        assert_eq!(get("rt"), "1065910455003");
        assert_eq!(get("externalId"), event.event.id);
        assert_eq!(get("cat"), "policy.violation");
        assert_eq!(
            (get("cs1Label"), get("cs1")),
            ("subject".into(), "Certificate/web".into())
        );
        assert_eq!(
            (get("cs2Label"), get("cs2")),
            ("fingerprint".into(), "f1".into())
        );
        assert_eq!(
            (get("cs3Label"), get("cs3")),
            ("commit".into(), "c0ffee".into())
        );
        assert_eq!(get("cs4"), "PCI-DSS 4.2.1,SOC2 CC6.7");
        assert_eq!(get("cs5"), "Certificate/web");
        assert_eq!(get("cs6"), "tls-min");
        assert_eq!((get("cn1Label"), get("cn1")), ("line".into(), "7".into()));
        assert_eq!(get("suser"), "Ada <ada@example.com>");
        assert_eq!(get("fname"), "certs/web.yaml");
        assert_eq!(get("flexString1"), "https://git.example.com/pki.git");
        // CR and LF survive as escapes; TAB and NUL cannot.
        assert_eq!(
            get("msg"),
            HOSTILE.replace('\t', " ").replace('\0', "\u{fffd}")
        );
        assert_eq!(pairs.last().map(|(k, _)| k.as_str()), Some("msg"));
        assert!(!line.contains(['\0', '\r', '\n', '\t']));
    }

    #[test]
    fn cef_severity_and_a_long_name() {
        for (severity, code) in [
            (FindingSeverity::Info, "1"),
            (FindingSeverity::Low, "3"),
            (FindingSeverity::Medium, "5"),
            (FindingSeverity::High, "8"),
            (FindingSeverity::Critical, "10"),
        ] {
            let line = encoder(SyslogFormat::Cef, "^").encode(&stored("m", severity), None);
            assert_eq!(parse_cef(&line).0[6], code);
        }
        let long = "ü".repeat(2000);
        let line =
            encoder(SyslogFormat::Cef, "^").encode(&stored(&long, FindingSeverity::Low), None);
        let (header, pairs) = parse_cef(&line);
        assert_eq!(header[5], format!("{}...", "ü".repeat(509)));
        assert_eq!(pairs.last().map(|(_, v)| v.as_str()), Some(long.as_str()));
        // No message: the name is the event type.
        let line = encoder(SyslogFormat::Cef, "^").encode(&stored("", FindingSeverity::Low), None);
        assert_eq!(parse_cef(&line).0[5], "policy.violation");
        assert!(!line.contains("msg="));
    }

    #[test]
    fn a_cef_datagram_is_cut_outside_escapes_and_keeps_its_header() {
        let event = stored(&"\\=🔒".repeat(2_000), FindingSeverity::High);
        let line = encoder(SyslogFormat::Cef, "^").encode(&event, None);
        let keys: Vec<String> = parse_cef(&line).1.into_iter().map(|(k, _)| k).collect();
        let known: Vec<&str> = keys.iter().map(String::as_str).collect();
        for limit in (480..520).chain(700..1200) {
            let line = encoder(SyslogFormat::Cef, "^").encode(&event, Some(limit));
            assert!(line.len() <= limit, "{limit}");
            let body = line.strip_suffix(MARK).unwrap();
            let slashes = body.bytes().rev().take_while(|b| *b == b'\\').count();
            assert_eq!(slashes % 2, 0, "{limit}: {line}");
            let (header, pairs) = parse_cef(&line);
            assert_eq!(header.len(), 7, "{limit}: {line}");
            assert_eq!(header[6], "8");
            assert!(
                pairs.iter().all(|(k, _)| known.contains(&k.as_str())),
                "{pairs:?}"
            );
            // The name gives way to what identifies the event.
            assert_eq!(pairs[1], ("externalId".to_owned(), event.event.id.clone()));
            assert_eq!(pairs[2], ("cat".to_owned(), "policy.violation".to_owned()));
        }
        let line = encoder(SyslogFormat::Cef, "^").encode(&event, Some(4096));
        let (_, pairs) = parse_cef(&line);
        let msg = &pairs.last().unwrap().1;
        assert!(
            msg.starts_with("\\=🔒\\=🔒") && msg.ends_with(MARK),
            "{msg}"
        );
    }

    /// A LEEF 2.0 line split as the LEEF specification says: six `|`-separated header fields
    /// (the sixth the delimiter), then attributes separated by the delimiter, each split at
    /// its first `=`.
    fn parse_leef(line: &str) -> (Vec<String>, Vec<(String, String)>) {
        let start = line.find("LEEF:").unwrap();
        let fields: Vec<&str> = line[start..].splitn(7, '|').collect();
        let delimiter = Delimiter::parse(fields[5]).unwrap().char;
        let pairs = fields[6]
            .split(delimiter)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        (fields[..6].iter().map(|f| f.to_string()).collect(), pairs)
    }

    #[test]
    fn the_leef_reader_of_these_tests_reads_the_documented_example() {
        for example in fixture("leef-examples.json").as_array().unwrap() {
            let Some(expect) = example.get("expect") else {
                continue;
            };
            let (header, pairs) = parse_leef(example["line"].as_str().unwrap());
            assert_eq!(header[4], expect["event_id"].as_str().unwrap());
            assert_eq!(header[5], expect["delimiter"].as_str().unwrap());
            let attributes = expect["attributes"].as_object().unwrap();
            assert_eq!(pairs.len(), attributes.len());
            for (key, value) in pairs {
                assert_eq!(attributes[&key].as_str(), Some(value.as_str()));
            }
        }
    }

    #[test]
    fn delimiters_are_one_character_or_a_hex_code_that_cannot_split_attributes() {
        let parsed = |text: &str| Delimiter::parse(text).map(|d| (d.char, d.spelled));
        assert_eq!(parsed("^"), Ok(('^', "^".to_owned())));
        assert_eq!(parsed("x09"), Ok(('\t', "x09".to_owned())));
        assert_eq!(parsed("0x5E"), Ok(('^', "0x5E".to_owned())));
        assert_eq!(parsed("X7e"), Ok(('~', "X7e".to_owned())));
        assert_eq!(parsed("x00A6"), Ok(('¦', "x00A6".to_owned())));
        assert_eq!(parsed("¦"), Ok(('¦', "¦".to_owned())));
        for (text, why) in [
            ("|", "separates the LEEF header"),
            ("x7C", "separates the LEEF header"),
            ("=", "name from its value"),
            ("0x3d", "name from its value"),
            ("x00", "control character"),
            ("x0a", "control character"),
            ("x85", "control character"),
            ("x20", "spaces"),
            ("a", "letters and digits"),
            ("x35", "letters and digits"),
            ("^^", "neither one character"),
            ("x", "letters and digits"),
            ("x12345", "neither one character"),
            ("0xZZ", "neither one character"),
            ("", "neither one character"),
        ] {
            let problem = Delimiter::parse(text).map_err(|SinkProblem(p)| p);
            assert!(
                problem.as_ref().is_err_and(|p| p.contains(why)),
                "{text:?}: {problem:?}"
            );
        }
        let settings = SyslogSettings {
            delimiter: "|".into(),
            ..SyslogSettings::default()
        };
        assert!(Encoder::new(&settings, "h", 1).is_err());
    }

    #[test]
    fn leef_carries_the_event_in_attributes_with_the_delimiter_replaced() {
        let event = stored(HOSTILE, FindingSeverity::Medium);
        let line = encoder(SyslogFormat::Leef, "^").encode(&event, None);
        assert!(
            line.starts_with(&format!(
                "<84>1 2003-10-11T22:14:15.003000Z build-7.example.com gitward 4242 \
                 policy.violation - LEEF:2.0|gitward|gitward|{VERSION}|policy.violation|^|\
                 devTime=1065910455003^cat=policy.violation^sev=5^eventId="
            )),
            "{line}"
        );
        let (header, pairs) = parse_leef(&line);
        assert_eq!(header[4], "policy.violation");
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "devTime",
                "cat",
                "sev",
                "eventId",
                "subject",
                "fingerprint",
                "identHostName",
                "usrName",
                "commit",
                "resource",
                "file",
                "policy",
                "compliance",
                "source",
                "msg"
            ]
        );
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).unwrap().1.clone();
        assert_eq!(get("identHostName"), "build-7.example.com");
        assert_eq!(get("usrName"), "Ada <ada@example.com>");
        assert_eq!(get("eventId"), event.event.id);
        assert_eq!(
            get("msg"),
            "a|b=c\\d]e\"f  g\u{fffd}h i é 日本 🔒 \u{fffd}x",
            "CR, LF, TAB a space; NUL and the delimiter U+FFFD; `|` and `=` kept"
        );
        assert!(!line.contains(['\0', '\r', '\n', '\t']));
    }

    #[test]
    fn leef_with_a_tab_delimiter() {
        let event = stored(HOSTILE, FindingSeverity::Info);
        let line = encoder(SyslogFormat::Leef, "x09").encode(&event, None);
        assert!(line.contains("|policy.violation|x09|devTime="), "{line}");
        let (_, pairs) = parse_leef(&line);
        assert_eq!(pairs[2], ("sev".to_owned(), "1".to_owned()));
        assert_eq!(
            pairs.last().unwrap().1,
            "a|b=c\\d]e\"f  g\u{fffd}h i é 日本 🔒 ^x"
        );
        assert_eq!(leef_value("a^b\tc", '^'), "a\u{fffd}b c");
    }

    #[test]
    fn a_leef_datagram_cuts_the_message_last() {
        let event = stored(&"日本^".repeat(2_000), FindingSeverity::Low);
        let whole = parse_leef(&encoder(SyslogFormat::Leef, "^").encode(&event, None)).1;
        for limit in 480..1000 {
            let line = encoder(SyslogFormat::Leef, "^").encode(&event, Some(limit));
            assert!(line.len() <= limit);
            // Whole pairs, the last one's value cut; never a key.
            let (_, pairs) = parse_leef(&line);
            let (last, kept) = pairs.split_last().unwrap();
            assert_eq!(kept, &whole[..kept.len()], "{limit}");
            let (key, value) = &whole[kept.len()];
            assert_eq!(&last.0, key);
            let cut = last
                .1
                .strip_suffix(MARK)
                .unwrap_or_else(|| panic!("{limit}: {last:?}"));
            assert!(value.starts_with(cut), "{limit}: {last:?}");
        }
    }
}
