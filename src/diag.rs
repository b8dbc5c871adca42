//! Diagnostics: every problem gitward finds in a repository, located at `file:line:col`.
//!
//! Parsing works on file contents alone and produces [`Problem`]s (a position and a message);
//! the loader attaches the repository-relative path to make a [`Diagnostic`]. Diagnostics sort
//! by file, line and column so output is stable whatever order the work ran in.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A 1-based line and column in a file (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };

    /// From 1-based numbers; a 0 (regorus puts some errors at column 0) counts as 1, so
    /// every position printed is one an editor can go to.
    pub fn new(line: usize, col: usize) -> Pos {
        Pos {
            line: u32::try_from(line.max(1)).unwrap_or(u32::MAX),
            col: u32::try_from(col.max(1)).unwrap_or(u32::MAX),
        }
    }

    /// The position of byte `offset` in `bytes`: lines counted by `\n`, columns in characters
    /// (invalid UTF-8 counts a byte as a character).
    pub fn of_offset(bytes: &[u8], offset: usize) -> Pos {
        let before = &bytes[..offset.min(bytes.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Pos::new(line, col)
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A problem inside one file, before the file's path is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pos: Pos,
    pub severity: Severity,
    pub message: String,
}

/// Longest message a problem keeps. Messages quote repository text (a value, a key, a field
/// name), and one line of a file may be a megabyte: quoted whole, it would fill the output, the
/// notes and a pull-request comment.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// `text` cut to `max` characters, saying how many more there were.
pub fn bounded(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max) {
        let more = text[at..].chars().count();
        text.truncate(at);
        text.push_str(&format!("… ({more} more characters)"));
    }
    text
}

/// Most lines of a record read back from Git (a note, a status file) that are shown.
pub const MAX_SHOWN_LINES: usize = 400;

/// Text made of what anyone who can push a ref may have written, as a terminal shows it:
/// each line cut to [`MAX_MESSAGE_CHARS`], at most [`MAX_SHOWN_LINES`] lines. Escaping is the
/// caller's: this bounds how much is printed.
pub fn shown_bounded(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: String = lines
        .iter()
        .take(MAX_SHOWN_LINES)
        .map(|line| bounded((*line).to_owned(), MAX_MESSAGE_CHARS) + "\n")
        .collect();
    if let Some(more) = lines.len().checked_sub(MAX_SHOWN_LINES).filter(|n| *n > 0) {
        out.push_str(&format!("… ({more} more lines)\n"));
    }
    out
}

impl Problem {
    pub fn error(pos: Pos, message: impl Into<String>) -> Problem {
        Problem {
            pos,
            severity: Severity::Error,
            message: bounded(message.into(), MAX_MESSAGE_CHARS),
        }
    }

    pub fn warning(pos: Pos, message: impl Into<String>) -> Problem {
        Problem {
            pos,
            severity: Severity::Warning,
            message: bounded(message.into(), MAX_MESSAGE_CHARS),
        }
    }

    pub fn in_file(&self, file: &str) -> Diagnostic {
        Diagnostic {
            file: file.to_owned(),
            line: self.pos.line,
            column: self.pos.col,
            severity: self.severity,
            message: self.message.clone(),
        }
    }
}

/// A problem located in the repository: `file:line:col: message`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct Diagnostic {
    /// Path relative to the repository root, `/`-separated.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &str, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Problem::error(pos, message).in_file(file)
    }

    pub fn warning(file: &str, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Problem::warning(pos, message).in_file(file)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", Escaped(&self.file), self.line, self.column)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}", Escaped(&self.message))
    }
}

/// Text from the repository (a file name, a value, a policy's message) made safe to print:
/// control characters, bidirectional controls and the two non-characters XML forbids are
/// written as escapes, so hostile text cannot forge lines, send terminal escapes, show other
/// text than it holds (U+202E reverses what follows) or break an XML report.
pub struct Escaped<'a>(pub &'a str);

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{fffe}'
                | '\u{ffff}'
                // Marks, embeddings, overrides and isolates (Unicode Bidirectional Algorithm).
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if needs_escape(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// [`Escaped`] as a string, borrowed when nothing needed escaping.
pub fn escaped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(needs_escape) {
        std::borrow::Cow::Owned(Escaped(text).to_string())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `did you mean `x`?` for the closest candidate, when one is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// The candidate closest to `word`: similar spelling, or a name that has `word` as one of
/// its `-`-separated parts (`jira` → `security-jira`).
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lowered = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let c_lower = c.to_lowercase();
            let part = c_lower.split('-').any(|p| p == lowered);
            let score = strsim::jaro_winkler(&lowered, &c_lower).max(if part { 0.85 } else { 0.0 });
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_character_columns() {
        let text = b"ab\n\xc3\xa7d\xff\n";
        assert_eq!(Pos::of_offset(text, 0), Pos { line: 1, col: 1 });
        assert_eq!(Pos::of_offset(text, 3), Pos { line: 2, col: 1 });
        assert_eq!(Pos::of_offset(text, 5), Pos { line: 2, col: 2 });
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(
            did_you_mean("dnsName", ["dnsNames", "ipAddresses"]),
            "; did you mean `dnsNames`?"
        );
        assert_eq!(did_you_mean("zzz", ["dnsNames", "ipAddresses"]), "");
    }

    #[test]
    fn control_characters_in_paths_and_messages_are_escaped() {
        let d = Diagnostic::error("a\nb.yaml", Pos::START, "unknown kind `x\u{1b}[31m`");
        assert_eq!(d.to_string(), "a\\nb.yaml:1:1: unknown kind `x\\u{1b}[31m`");
        assert_eq!(escaped("plain"), "plain");
        assert_eq!(
            escaped("allow \u{202e}yna\u{2066}"),
            "allow \\u{202e}yna\\u{2066}"
        );
    }
}
