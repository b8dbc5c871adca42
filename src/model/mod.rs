//! The config-repository model: resource types, parsing with positions, schemas, and the
//! checks within and across resources. Everything here is pure: bytes in, values out.

pub mod catalog;
pub mod parse;
pub mod schema;
pub mod semantic;
pub mod types;
pub mod values;
pub mod yaml;

pub use catalog::{Catalog, Loaded, LoadedFile};
pub use parse::{ParsedFile, Role};
pub use types::*;
pub use values::{DnsDomain, DnsName, Duration, KeyAlgorithm, Name, RepoPath};
