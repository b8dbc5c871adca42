//! The host's state under `stateDir`: the secret store of private keys (directory 0700, files
//! 0600; nothing key-like ever leaves it except a certificate's own key into its output) and
//! the state database (SQLite) with the issuance journal.
//!
//! The journal makes issuance crash-safe. A new key and certificate are *staged* — the key
//! written as `<name>.next.pem`, the certificate recorded in the journal — before anything
//! else happens with them; they are *promoted* (the key renamed into place, the journal entry
//! dropped) only once a status commit names the certificate. A reconcile interrupted between
//! the two reuses what it staged instead of issuing again, so no certificate is issued that
//! status does not end up knowing.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OptionalExtension, params};

use crate::failpoint;
use crate::model::Kind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {}: {source}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "state database {} is damaged ({source}); stop gitward and run `gitward state rebuild \
         --config <host config>`: it keeps the damaged file aside and rebuilds the database from \
         the status branch and the secret store",
        path.display()
    )]
    Damaged {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// Whether SQLite says the file is not a database it can use.
fn damaged(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

impl crate::redact::Private for StoreError {
    fn reason(&self) -> String {
        match self {
            StoreError::Io { source, .. } => format!("the secret store: {source}"),
            StoreError::Database { source, .. } => format!("the state database: {source}"),
            StoreError::Damaged { .. } => "the state database is damaged".to_owned(),
        }
    }
}

/// A key and certificate issued but not yet named by a status commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub spec_hash: String,
    pub issuer_fingerprint: Option<String>,
    pub certificate: String,
    pub serial: String,
    pub key: String,
}

pub struct Store {
    root: PathBuf,
    db: Connection,
    db_path: PathBuf,
}

/// What [`Store::rebuild`] did.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Where the old database went.
    pub kept_aside: Option<PathBuf>,
    /// Staged keys made the keys in force: status records their certificates.
    pub promoted: Vec<(Kind, String)>,
    /// Staged keys and ACME order keys removed: no certificate status knows uses them.
    pub discarded: Vec<(Kind, String)>,
}

/// What identifies a certificate's PEM text: SHA-256, hex.
pub fn certificate_digest(certificate: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(certificate.as_bytes()))
}

/// Whether `certificate` (PEM, leaf first) is for the private key `key` (PEM).
pub fn certifies(certificate: &str, key: &str) -> bool {
    let Ok(key) = rcgen::KeyPair::from_pem(key) else {
        return false;
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(certificate.as_bytes()) else {
        return false;
    };
    let Ok(parsed) = pem.parse_x509() else {
        return false;
    };
    use rcgen::PublicKeyData;
    parsed.tbs_certificate.subject_pki.raw == key.subject_public_key_info().as_slice()
}

/// An ACME order validated by the CA and about to be finalized: when a run dies before the
/// certificate is staged, the next one finishes this order with this key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedOrder {
    pub name: String,
    pub account: String,
    pub spec_hash: String,
    pub url: String,
    pub key: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS staged (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    issuer_fingerprint TEXT,
    certificate TEXT NOT NULL,
    serial TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS deliveries (
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    seen INTEGER NOT NULL,
    PRIMARY KEY (provider, id)
);
CREATE INDEX IF NOT EXISTS deliveries_seen ON deliveries (seen);
CREATE TABLE IF NOT EXISTS issued (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS record (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS acme_orders (
    name TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    url TEXT NOT NULL
);
";

fn private_dir(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Holds `stateDir/gitward.lock`: one process at a time works on a state directory.
pub fn lock_state_dir(state_dir: &Path) -> Result<Flock<std::fs::File>, LockError> {
    private_dir(state_dir).map_err(LockError::Store)?;
    let path = state_dir.join("gitward.lock");
    let file = std::fs::File::create(&path)
        .map_err(|source| LockError::Store(StoreError::Io { path, source }))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| LockError::Busy(state_dir.to_path_buf()))
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another gitward daemon is running with stateDir {} (stop it first)",
        .0.display()
    )]
    Busy(PathBuf),
    #[error(transparent)]
    Store(StoreError),
}

impl Store {
    /// Opens (creating) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        private_dir(state_dir)?;
        private_dir(&state_dir.join("keys"))?;
        let db_path = state_dir.join("gitward.db");
        let database = |source: rusqlite::Error| {
            let path = db_path.clone();
            if damaged(&source) {
                StoreError::Damaged { path, source }
            } else {
                StoreError::Database { path, source }
            }
        };
        let db = Connection::open(&db_path).map_err(database)?;
        std::fs::set_permissions(&db_path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Io {
                path: db_path.clone(),
                source,
            },
        )?;
        // The daemon's web handlers and its reconciles each hold a connection.
        db.busy_timeout(std::time::Duration::from_secs(10))
            .and_then(|()| {
                db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            })
            .and_then(|()| db.execute_batch(SCHEMA))
            .and_then(|()| db.execute_batch(crate::events::outbox::SCHEMA))
            .and_then(|()| db.execute_batch(crate::tickets::store::SCHEMA))
            .map_err(database)?;
        Ok(Store {
            root: state_dir.to_path_buf(),
            db,
            db_path,
        })
    }

    /// Replaces the state database with a new one: the old file (damaged, or not) is kept
    /// aside, and the journal is rebuilt from what it protects. A staged key whose
    /// certificate status records (`recorded`) is made the key in force, as the journal's
    /// promotion would have; any other staged key belongs to a certificate status never
    /// learnt of, and is removed so that it is issued again. Delivery ids and ACME orders in
    /// flight cannot be rebuilt: a replayed webhook may reconcile once more, and an order
    /// interrupted by a crash is placed again.
    pub fn rebuild(
        state_dir: &Path,
        recorded: &dyn Fn(Kind, &str) -> Option<String>,
        now: i64,
    ) -> Result<Rebuilt, StoreError> {
        let db_path = state_dir.join("gitward.db");
        let mut rebuilt = Rebuilt::default();
        if db_path.exists() {
            // A name no earlier rebuild took: what was kept aside stays kept.
            let aside = (0..)
                .map(|n| match n {
                    0 => state_dir.join(format!("gitward.db.damaged-{now}")),
                    n => state_dir.join(format!("gitward.db.damaged-{now}-{n}")),
                })
                .find(|candidate| std::fs::symlink_metadata(candidate).is_err())
                .unwrap_or_else(|| state_dir.join("gitward.db.damaged"));
            std::fs::rename(&db_path, &aside).map_err(|source| StoreError::Io {
                path: aside.clone(),
                source,
            })?;
            for suffix in ["-wal", "-shm"] {
                let companion = state_dir.join(format!("gitward.db{suffix}"));
                if companion.exists() {
                    let moved = PathBuf::from(format!("{}{suffix}", aside.display()));
                    std::fs::rename(&companion, &moved).map_err(|source| StoreError::Io {
                        path: moved,
                        source,
                    })?;
                }
            }
            rebuilt.kept_aside = Some(aside);
        }
        let store = Store::open(state_dir)?;
        for kind in Kind::ALL {
            let dir = state_dir.join("keys").join(kind.schema_stem());
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                let Some(name) = file
                    .strip_suffix(".next.pem")
                    .or_else(|| file.strip_suffix(".order.pem"))
                else {
                    continue;
                };
                let staged = file.ends_with(".next.pem");
                let key = read_optional(&entry.path())?.unwrap_or_default();
                if staged && recorded(*kind, name).is_some_and(|pem| certifies(&pem, &key)) {
                    store.promote(&[(*kind, name.to_owned())])?;
                    rebuilt.promoted.push((*kind, name.to_owned()));
                } else {
                    remove_optional(&entry.path())?;
                    rebuilt.discarded.push((*kind, name.to_owned()));
                }
            }
        }
        Ok(rebuilt)
    }

    fn key_path(&self, kind: Kind, name: &str, next: bool) -> PathBuf {
        let file = if next {
            format!("{name}.next.pem")
        } else {
            format!("{name}.pem")
        };
        self.root.join("keys").join(kind.schema_stem()).join(file)
    }

    pub(crate) fn db_error(&self) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Database {
            path: self.db_path.clone(),
            source,
        }
    }

    /// Records webhook delivery `id` from `provider` at `now` (Unix seconds); false when it
    /// was recorded before, i.e. the delivery is a replay. Ids older than `keep_seconds` are
    /// forgotten.
    pub fn first_delivery(
        &self,
        provider: &str,
        id: &str,
        now: i64,
        keep_seconds: i64,
    ) -> Result<bool, StoreError> {
        self.db
            .execute(
                "DELETE FROM deliveries WHERE seen < ?1",
                params![now - keep_seconds],
            )
            .map_err(self.db_error())?;
        let inserted = self
            .db
            .execute(
                "INSERT OR IGNORE INTO deliveries (provider, id, seen) VALUES (?1, ?2, ?3)",
                params![provider, id, now],
            )
            .map_err(self.db_error())?;
        Ok(inserted == 1)
    }

    /// The key of the certificate in force, if there is one.
    pub fn key(&self, kind: Kind, name: &str) -> Result<Option<String>, StoreError> {
        read_optional(&self.key_path(kind, name, false))
    }

    /// Whether a certificate is in force with its key.
    pub fn has_key(&self, kind: Kind, name: &str) -> bool {
        self.key_path(kind, name, false).exists()
    }

    /// Records freshly issued keys and certificates before they are used: every key file
    /// synced, then one journal transaction.
    pub fn stage(&self, batch: &[(Kind, String, Staged)]) -> Result<(), StoreError> {
        let mut dirs = BTreeSet::new();
        for (kind, name, staged) in batch {
            let path = self.key_path(*kind, name, true);
            write_private_file(&path, staged.key.as_bytes())?;
            dirs.extend(path.parent().map(Path::to_path_buf));
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        failpoint::point("keys staged");
        let transaction = write_transaction(&self.db).map_err(self.db_error())?;
        for (kind, name, staged) in batch {
            transaction
                .execute(
                    "INSERT OR REPLACE INTO staged (kind, name, spec_hash, issuer_fingerprint, certificate, serial) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![kind.as_str(), name, staged.spec_hash, staged.issuer_fingerprint, staged.certificate, staged.serial],
                )
                .map_err(self.db_error())?;
        }
        let certificates: Vec<&str> = batch
            .iter()
            .filter(|(kind, _, _)| *kind == Kind::Certificate)
            .map(|(_, name, _)| name.as_str())
            .collect();
        self.finish_orders(&transaction, &certificates)?;
        transaction.commit().map_err(self.db_error())?;
        failpoint::point("certificates journaled");
        for name in certificates {
            remove_optional(&self.order_key_path(name))?;
        }
        Ok(())
    }

    /// What is staged for a resource, if anything (with its key).
    pub fn staged(&self, kind: Kind, name: &str) -> Result<Option<Staged>, StoreError> {
        let row = self
            .db
            .query_row(
                "SELECT spec_hash, issuer_fingerprint, certificate, serial FROM staged WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?)),
            )
            .optional()
            .map_err(self.db_error())?;
        let Some((spec_hash, issuer_fingerprint, certificate, serial)) = row else {
            return Ok(None);
        };
        // A journal entry whose key did not make it to disk is of no use: issue again.
        let Some(key) = read_optional(&self.key_path(kind, name, true))? else {
            return Ok(None);
        };
        Ok(Some(Staged {
            spec_hash,
            issuer_fingerprint,
            certificate,
            serial,
            key,
        }))
    }

    /// Every staged (kind, name, serial).
    pub fn all_staged(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut query = self
            .db
            .prepare("SELECT kind, name, serial FROM staged")
            .map_err(self.db_error())?;
        let rows = query
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(self.db_error())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db_error())
    }

    /// The state database, for the outbox.
    pub fn db(&self) -> &Connection {
        &self.db
    }

    /// Records the outcome of a reconcile whose status is written, in one transaction: the
    /// staged keys it names become the keys in force, the commit in force and the open
    /// override reviews are what it says, and its held events are released to the sinks.
    pub fn record_outcome(&self, outcome: &RecordedOutcome) -> Result<(), StoreError> {
        self.promote_keys(outcome.promote)?;
        let transaction = write_transaction(&self.db).map_err(self.db_error())?;
        self.promote_rows(&transaction, outcome.promote)?;
        if let Some(sha) = outcome.in_force {
            set_record(&transaction, "inForce", sha).map_err(self.db_error())?;
        }
        set_record(&transaction, "overrideReviews", outcome.override_reviews)
            .map_err(self.db_error())?;
        set_record(&transaction, "openConditions", outcome.open_conditions)
            .map_err(self.db_error())?;
        set_record(
            &transaction,
            "gatesBlockedSince",
            outcome.gates_blocked_since,
        )
        .map_err(self.db_error())?;
        crate::events::outbox::release(&transaction, outcome.now).map_err(self.db_error())?;
        transaction.commit().map_err(self.db_error())
    }

    /// Makes the staged keys the keys in force: status now names their certificates.
    pub fn promote(&self, items: &[(Kind, String)]) -> Result<(), StoreError> {
        self.promote_keys(items)?;
        let transaction = write_transaction(&self.db).map_err(self.db_error())?;
        self.promote_rows(&transaction, items)?;
        transaction.commit().map_err(self.db_error())
    }

    fn promote_keys(&self, items: &[(Kind, String)]) -> Result<(), StoreError> {
        let mut dirs = BTreeSet::new();
        for (kind, name) in items {
            let next = self.key_path(*kind, name, true);
            let current = self.key_path(*kind, name, false);
            if next.exists() {
                std::fs::rename(&next, &current).map_err(|source| StoreError::Io {
                    path: current.clone(),
                    source,
                })?;
                dirs.extend(current.parent().map(Path::to_path_buf));
            }
            // The order's copy of the key, if a crash kept staging from removing it.
            if *kind == Kind::Certificate {
                remove_optional(&self.order_key_path(name))?;
            }
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        failpoint::point("keys promoted");
        Ok(())
    }

    fn promote_rows(
        &self,
        transaction: &Connection,
        items: &[(Kind, String)],
    ) -> Result<(), StoreError> {
        for (kind, name) in items {
            // The certificate made current is what status may name for it from now on.
            let certificate: Option<String> = transaction
                .query_row(
                    "SELECT certificate FROM staged WHERE kind = ?1 AND name = ?2",
                    params![kind.as_str(), name],
                    |row| row.get(0),
                )
                .optional()
                .map_err(self.db_error())?;
            if let Some(certificate) = certificate {
                transaction
                    .execute(
                        "INSERT INTO issued (kind, name, digest) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (kind, name) DO UPDATE SET digest = excluded.digest",
                        params![kind.as_str(), name, certificate_digest(&certificate)],
                    )
                    .map_err(self.db_error())?;
            }
            transaction
                .execute(
                    "DELETE FROM staged WHERE kind = ?1 AND name = ?2",
                    params![kind.as_str(), name],
                )
                .map_err(self.db_error())?;
        }
        Ok(())
    }

    /// The digest of each certificate this host made current, by kind and name.
    pub fn issued(&self) -> Result<HashMap<(Kind, String), String>, StoreError> {
        let mut statement = self
            .db
            .prepare("SELECT kind, name, digest FROM issued")
            .map_err(self.db_error())?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                ))
            })
            .map_err(self.db_error())?;
        let mut issued = HashMap::new();
        for row in rows {
            let (kind, name, digest) = row.map_err(self.db_error())?;
            if let Some(kind) = Kind::parse(&kind) {
                issued.insert((kind, name), digest);
            }
        }
        Ok(issued)
    }

    /// Records the digests of certificates in force whose records predate [`Store::issued`],
    /// once each is shown to be for the key this host holds; one transaction.
    pub fn record_issued(&self, digests: &[(Kind, String, String)]) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        let transaction = write_transaction(&self.db).map_err(self.db_error())?;
        for (kind, name, digest) in digests {
            transaction
                .execute(
                    "INSERT INTO issued (kind, name, digest) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (kind, name) DO UPDATE SET digest = excluded.digest",
                    params![kind.as_str(), name, digest],
                )
                .map_err(self.db_error())?;
        }
        transaction.commit().map_err(self.db_error())
    }

    fn order_key_path(&self, name: &str) -> PathBuf {
        self.root
            .join("keys")
            .join(Kind::Certificate.schema_stem())
            .join(format!("{name}.order.pem"))
    }

    /// Records ACME orders before they are finalized: keys synced, then one transaction.
    pub fn record_orders(&self, orders: &[RecordedOrder]) -> Result<(), StoreError> {
        if orders.is_empty() {
            return Ok(());
        }
        let mut dirs = BTreeSet::new();
        for order in orders {
            let path = self.order_key_path(&order.name);
            write_private_file(&path, order.key.as_bytes())?;
            dirs.extend(path.parent().map(Path::to_path_buf));
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        let transaction = write_transaction(&self.db).map_err(self.db_error())?;
        for order in orders {
            transaction
                .execute(
                    "INSERT OR REPLACE INTO acme_orders (name, account, spec_hash, url) VALUES (?1, ?2, ?3, ?4)",
                    params![order.name, order.account, order.spec_hash, order.url],
                )
                .map_err(self.db_error())?;
        }
        transaction.commit().map_err(self.db_error())?;
        failpoint::point("orders recorded");
        Ok(())
    }

    /// The ACME order recorded for certificate `name` and not yet finished, if any.
    pub fn recorded_order(&self, name: &str) -> Result<Option<RecordedOrder>, StoreError> {
        let row = self
            .db
            .query_row(
                "SELECT account, spec_hash, url FROM acme_orders WHERE name = ?1",
                params![name],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(self.db_error())?;
        let Some((account, spec_hash, url)) = row else {
            return Ok(None);
        };
        let Some(key) = read_optional(&self.order_key_path(name))? else {
            return Ok(None);
        };
        Ok(Some(RecordedOrder {
            name: name.to_owned(),
            account,
            spec_hash,
            url,
            key,
        }))
    }

    /// Drops the ACME orders of these certificates, which are staged or forgotten.
    fn finish_orders(
        &self,
        transaction: &rusqlite::Transaction<'_>,
        names: &[&str],
    ) -> Result<(), StoreError> {
        for name in names {
            transaction
                .execute("DELETE FROM acme_orders WHERE name = ?1", params![name])
                .map_err(self.db_error())?;
        }
        Ok(())
    }

    /// The stored registration of ACME account `name` (its key included), if there is one.
    pub fn acme_account(&self, name: &str) -> Result<Option<String>, StoreError> {
        read_optional(&self.acme_account_path(name))
    }

    /// Keeps the registration of ACME account `name`.
    pub fn save_acme_account(&self, name: &str, registration: &str) -> Result<(), StoreError> {
        write_private(&self.acme_account_path(name), registration.as_bytes())
    }

    fn acme_account_path(&self, name: &str) -> PathBuf {
        self.root.join("acme").join(format!("{name}.json"))
    }

    /// What the daemon itself recorded as the commit in force. The status branch says so too,
    /// but in a repository worked on in place anyone who can push writes that branch: the
    /// host's own record decides which gates govern and what a head is compared with.
    pub fn in_force(&self) -> Result<Option<String>, StoreError> {
        self.record("inForce")
    }

    pub fn set_in_force(&self, sha: &str) -> Result<(), StoreError> {
        self.set_record("inForce", sha)
    }

    /// The open override reviews, as the daemon recorded them (JSON), for the same reason.
    pub fn override_reviews(&self) -> Result<Option<String>, StoreError> {
        self.record("overrideReviews")
    }

    pub fn set_override_reviews(&self, json: &str) -> Result<(), StoreError> {
        self.set_record("overrideReviews", json)
    }

    /// The problems events opened and no event cleared yet (condition keys).
    pub fn open_conditions(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        Ok(self
            .record("openConditions")?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// Since when each gate blocking the branch has, as the last reconcile recorded.
    pub fn gates_blocked_since(
        &self,
    ) -> Result<std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>>, StoreError> {
        Ok(self
            .record("gatesBlockedSince")?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    fn record(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db
            .query_row(
                "SELECT value FROM record WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.db_error())
    }

    fn set_record(&self, key: &str, value: &str) -> Result<(), StoreError> {
        set_record(&self.db, key, value).map_err(self.db_error())
    }

    /// Forgets a resource: its keys and anything staged or ordered for it.
    pub fn forget(&self, kind: Kind, name: &str) -> Result<(), StoreError> {
        let transaction = write_transaction(&self.db).map_err(self.db_error())?;
        transaction
            .execute(
                "DELETE FROM staged WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
            )
            .map_err(self.db_error())?;
        transaction
            .execute(
                "DELETE FROM issued WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
            )
            .map_err(self.db_error())?;
        if kind == Kind::Certificate {
            self.finish_orders(&transaction, &[name])?;
            remove_optional(&self.order_key_path(name))?;
        }
        transaction.commit().map_err(self.db_error())?;
        for next in [true, false] {
            remove_optional(&self.key_path(kind, name, next))?;
        }
        Ok(())
    }
}

/// A transaction that takes the write lock when it starts: one that begins as a read and then
/// writes fails at once ("database is locked") when another connection wrote in between, as
/// the sink workers do while a reconcile records.
pub fn write_transaction(db: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(db, rusqlite::TransactionBehavior::Immediate)
}

fn set_record(db: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    db.execute(
        "INSERT INTO record (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
}

/// What [`Store::record_outcome`] records.
pub struct RecordedOutcome<'a> {
    pub promote: &'a [(Kind, String)],
    pub in_force: Option<&'a str>,
    pub override_reviews: &'a str,
    /// The problems open after the reconcile (a JSON list of condition keys).
    pub open_conditions: &'a str,
    /// Since when each gate blocking the branch has (a JSON map of gate to time).
    pub gates_blocked_since: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
}

fn remove_optional(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a private file atomically: mode 0600 from creation, synced, renamed into place,
/// the directory synced.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_private_file(path, bytes)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// [`write_private`] without the directory sync, for batches that sync each directory once.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    private_dir(dir)?;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(serial: &str) -> Staged {
        Staged {
            spec_hash: "h".into(),
            issuer_fingerprint: Some("f".into()),
            certificate: "CERT".into(),
            serial: serial.into(),
            key: "KEY".into(),
        }
    }

    #[test]
    fn staged_keys_become_current_only_when_promoted() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("state")).unwrap();
        assert_eq!(
            std::fs::metadata(tmp.path().join("state/keys"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        store
            .stage(&[(Kind::Certificate, "api".to_owned(), staged("01"))])
            .unwrap();
        assert_eq!(store.key(Kind::Certificate, "api").unwrap(), None);
        // Survives a reopen, as after a crash.
        let store = Store::open(&tmp.path().join("state")).unwrap();
        assert_eq!(
            store.staged(Kind::Certificate, "api").unwrap(),
            Some(staged("01"))
        );
        assert_eq!(
            store.all_staged().unwrap(),
            [("Certificate".to_owned(), "api".to_owned(), "01".to_owned())]
        );
        store
            .promote(&[(Kind::Certificate, "api".to_owned())])
            .unwrap();
        assert_eq!(
            store.key(Kind::Certificate, "api").unwrap().as_deref(),
            Some("KEY")
        );
        assert_eq!(store.staged(Kind::Certificate, "api").unwrap(), None);
        let key = tmp.path().join("state/keys/certificate/api.pem");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        store.forget(Kind::Certificate, "api").unwrap();
        assert!(!key.exists());
    }
}
