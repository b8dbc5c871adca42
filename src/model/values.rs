//! Value types shared by the resource kinds: names, durations, DNS names, key algorithms.
//!
//! Each carries its own JSON Schema, so the schema and the loader agree on what a valid value
//! is; the loader checks documents against the schema before these types are built.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Patterns used by the schemas; [`pattern_hint`] explains each to a user.
pub mod patterns {
    pub const NAME: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    pub const DURATION: &str =
        "^(?=[0-9dhms]*[1-9])([0-9]{1,6}d)?([0-9]{1,7}h)?([0-9]{1,8}m)?([0-9]{1,9}s)?$";
    pub const DNS_NAME: &str =
        "^(\\*\\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
    pub const DNS_DOMAIN: &str =
        "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
    pub const IP_ADDRESS: &str = "^[0-9a-fA-F:.]+$";
    pub const LABEL_KEY: &str =
        "^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
    pub const LABEL_VALUE: &str = "^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$";
    pub const RULE: &str = "^data(\\.[A-Za-z_][A-Za-z0-9_]*)+$";
    pub const RESOURCE_REF: &str =
        "^((Issuer|Certificate|Policy|Gate|Sink)/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    pub const DATE: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";
    pub const TIME_OF_DAY: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$";
    pub const REPO_PATH: &str = "^[^/\\\\](.*[^/])?$";
    /// A principal of an allowed-signers file: no spaces, commas or quotes.
    pub const PRINCIPAL: &str = "^[^\\s,\"*?!]{1,256}$";
    pub const TRAILER: &str = "^[A-Za-z0-9][-A-Za-z0-9]*$";
}

/// A human explanation of a schema pattern, for error messages.
pub fn pattern_hint(pattern: &str) -> Option<&'static str> {
    Some(match pattern {
        patterns::NAME => {
            "a name is lowercase letters, digits and '-', starting and ending with a letter or digit"
        }
        patterns::DURATION => "a duration is like 90d, 12h, 30m, 45s or 1d12h, and not zero",
        patterns::DNS_NAME => {
            "a DNS name is lowercase labels of letters, digits and '-' separated by dots, with at most a leading `*.`"
        }
        patterns::DNS_DOMAIN => {
            "a DNS domain is lowercase labels of letters, digits and '-' separated by dots"
        }
        patterns::IP_ADDRESS => "an IP address is like 10.0.0.5 or 2001:db8::1",
        patterns::LABEL_KEY => {
            "a label key is an optional DNS-prefix/ then letters, digits, '-', '_' and '.'"
        }
        patterns::LABEL_VALUE => {
            "a label value is letters, digits, '-', '_' and '.', at most 63 characters"
        }
        patterns::RULE => "a rule is a Rego path like data.gitward.keys.deny",
        patterns::DATE => "a date is written YYYY-MM-DD",
        patterns::RESOURCE_REF => "a resource is named `name` or `Kind/name`",
        patterns::TIME_OF_DAY => "a time of day is written HH:MM (00:00 to 24:00)",
        patterns::REPO_PATH => {
            "a path is relative to the repository root, without a leading or trailing '/'"
        }
        patterns::TRAILER => "a trailer name is letters, digits and '-'",
        _ => return None,
    })
}

/// Declares a string newtype whose schema is a pattern (and optional length bound).
macro_rules! pattern_string {
    ($(#[$doc:meta])* $name:ident, $pattern:expr, $max:expr, $description:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "maxLength": $max,
                    "description": $description,
                })
            }
        }
    };
}

pattern_string!(
    /// A resource name: a DNS label, unique per kind.
    Name,
    patterns::NAME,
    63,
    "A DNS-label-like name: lowercase letters, digits and '-', at most 63 characters."
);

pattern_string!(
    /// A DNS name for a certificate, optionally a wildcard in the leftmost label.
    DnsName,
    patterns::DNS_NAME,
    253,
    "A DNS name in lowercase; `*.` is allowed as the leftmost label."
);

pattern_string!(
    /// A DNS domain for name constraints: no wildcard; it covers its subdomains.
    DnsDomain,
    patterns::DNS_DOMAIN,
    253,
    "A DNS domain in lowercase; it also covers all of its subdomains."
);

pattern_string!(
    /// A path to a file in the config repository.
    RepoPath,
    patterns::REPO_PATH,
    4096,
    "A path relative to the repository root, '/'-separated."
);

/// A length of time written `90d`, `12h`, `30m`, `45s` or a combination such as `1d12h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    seconds: u64,
}

impl Duration {
    pub const fn from_secs(seconds: u64) -> Duration {
        Duration { seconds }
    }

    pub fn as_secs(self) -> u64 {
        self.seconds
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a duration: {hint}", hint = pattern_hint(patterns::DURATION).unwrap_or_default())]
pub struct DurationError(String);

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let err = || DurationError(text.to_owned());
        let mut seconds: u64 = 0;
        let mut rest = text;
        let mut last_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (number, tail) = rest.split_at(digits);
            let unit = tail.chars().next().ok_or_else(err)?;
            let (rank, factor) = match unit {
                'd' => (1, 86_400),
                'h' => (2, 3_600),
                'm' => (3, 60),
                's' => (4, 1),
                _ => return Err(err()),
            };
            if digits == 0 || rank <= last_unit {
                return Err(err());
            }
            last_unit = rank;
            let n: u64 = number.parse().map_err(|_| err())?;
            seconds = n
                .checked_mul(factor)
                .and_then(|s| seconds.checked_add(s))
                .ok_or_else(err)?;
            rest = &tail[1..];
        }
        if seconds == 0 {
            return Err(err());
        }
        Ok(Duration { seconds })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.seconds;
        for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
            if left >= size {
                write!(f, "{}{unit}", left / size)?;
                left %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": patterns::DURATION,
            "description": "A positive duration: 90d, 12h, 30m, 45s, or a combination in that order such as 1d12h.",
        })
    }
}

/// Declares a string enum with fixed spellings, its schema and its Display.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use string_enum;

string_enum!(
    /// Key algorithm and size of a generated private key.
    KeyAlgorithm {
        EcdsaP256 = "ECDSA-P256",
        EcdsaP384 = "ECDSA-P384",
        Ed25519 = "Ed25519",
        Rsa2048 = "RSA-2048",
        Rsa3072 = "RSA-3072",
        Rsa4096 = "RSA-4096",
    }
);

impl KeyAlgorithm {
    /// The key type as policies see it (`input.computed.keyType`).
    pub fn key_type(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => "ECDSA",
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => "RSA",
        }
    }

    /// The key size in bits (`input.computed.keyBits`).
    pub fn key_bits(self) -> u32 {
        match self {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Ed25519 => 256,
            KeyAlgorithm::EcdsaP384 => 384,
            KeyAlgorithm::Rsa2048 => 2048,
            KeyAlgorithm::Rsa3072 => 3072,
            KeyAlgorithm::Rsa4096 => 4096,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_unit_order_and_print_canonically() {
        let d: Duration = "1d12h".parse().unwrap();
        assert_eq!(d.as_secs(), 129_600);
        assert_eq!(d.to_string(), "1d12h");
        assert_eq!("90d".parse::<Duration>().unwrap().as_secs(), 7_776_000);
        assert_eq!("36h".parse::<Duration>().unwrap().to_string(), "1d12h");
        for bad in [
            "",
            "0d",
            "12",
            "d",
            "12h1d",
            "1d1d",
            "1w",
            "-1d",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn duration_pattern_agrees_with_the_parser() {
        let re = jsonschema_pattern(patterns::DURATION);
        for text in [
            "90d", "1d12h", "45s", "0d1s", "0d", "12", "12h1d", "1w", "", "0h0m",
        ] {
            assert_eq!(
                re(text),
                text.parse::<Duration>().is_ok(),
                "pattern and parser disagree on {text:?}"
            );
        }
    }

    fn jsonschema_pattern(pattern: &str) -> impl Fn(&str) -> bool {
        let validator =
            jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": pattern}))
                .expect("pattern compiles");
        move |text| validator.is_valid(&serde_json::json!(text))
    }
}
