//! What leaves the host, and what does not. The host config may put credentials in a URL
//! (`https://user:token@host/...`); [`credentials`] takes them out of any text before it is
//! logged, served or written. Failures on the host (a reload command's output, an output
//! directory) are told in full to the host's log and in short, through [`Private::reason`],
//! where the repository's writers read them: notes and the status branch.

use std::borrow::Cow;

/// What replaces a secret.
const MASK: &str = "***";

/// An error whose full text is for the host only.
pub trait Private: std::fmt::Display {
    /// The error without anything host-private: no directories, no command output.
    fn reason(&self) -> String;
}

/// `text` with the credentials of every URL in it masked: `scheme://user:***@host`, and a
/// lone `scheme://***@host` (forges take a token as the user name) except over SSH, where
/// the user name is a login. Text without credentials is borrowed as it is.
pub fn credentials(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut searched = 0;
    while let Some(found) = text[searched..].find("://") {
        let separator = searched + found;
        let authority_start = separator + "://".len();
        searched = authority_start;
        let scheme_start = text[..separator]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = &text[scheme_start..separator];
        if scheme.is_empty() {
            continue;
        }
        let authority_len = text[authority_start..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>')
            })
            .unwrap_or(text.len() - authority_start);
        let authority = &text[authority_start..authority_start + authority_len];
        // The last `@` ends the user info: what is before it never names the host.
        let Some(at) = authority.rfind('@') else {
            continue;
        };
        let user_info = &authority[..at];
        let masked = match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:{MASK}"),
            None if scheme.eq_ignore_ascii_case("ssh") || scheme.starts_with("git+ssh") => {
                continue;
            }
            None => MASK.to_owned(),
        };
        out.push_str(&text[copied..authority_start]);
        out.push_str(&masked);
        copied = authority_start + at;
        searched = copied;
    }
    if copied == 0 {
        Cow::Borrowed(text)
    } else {
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_in_urls_are_masked() {
        assert_eq!(
            credentials("remote https://ops:s3cret@git.example.com/pki.git: fetching"),
            "remote https://ops:***@git.example.com/pki.git: fetching"
        );
        assert_eq!(
            credentials("https://ghp_token@github.com/o/r and http://u:p:q@h:8080?x"),
            "https://***@github.com/o/r and http://u:***@h:8080?x"
        );
        // An `@` in the password, left unencoded, is still part of it.
        assert_eq!(credentials("git://a:b@c@host/r"), "git://a:***@host/r");
        assert_eq!(
            credentials("ssh://git@host:22/r ssh://git:pw@host/r"),
            "ssh://git@host:22/r ssh://git:***@host/r"
        );
    }

    #[test]
    fn text_without_credentials_is_kept() {
        for text in [
            "git@github.com:ops/pki.git",
            "https://registry.example.com/@scope/pkg",
            "file:///srv/git/pki.git",
            "://nothing@here",
            "mailto:ops@example.com",
        ] {
            assert!(
                matches!(credentials(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }
}
