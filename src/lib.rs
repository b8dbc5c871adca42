//! gitward: a Git repository as the control plane for TLS certificates, security gates and
//! Rego policies.
//!
//! The core — [`model`] (load and validate) and [`plan`] — is pure and works on values; the
//! edges read Git and the file system ([`source`], [`git`]), render reports ([`report`]) and
//! run the commands ([`commands`]).

pub mod acme;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod diag;
pub mod error;
pub mod events;
pub mod explain;
pub mod failpoint;
pub mod forge;
pub mod gate;
pub mod git;
pub mod metrics;
pub mod model;
pub mod outputs;
pub mod pki;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod redact;
pub mod remote;
pub mod report;
pub mod review;
pub mod scaffold;
pub mod server;
pub mod sinks;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod store;
pub mod tickets;
pub mod trust;
pub mod webhook;
