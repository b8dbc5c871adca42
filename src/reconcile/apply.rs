//! Carrying out a decision: each CA, parents first, and each certificate is kept, issued,
//! reissued or renewed by comparing its spec hash, its issuer's fingerprint and its renewal
//! time with what status records; files are written and targets reloaded.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rcgen::KeyPair;

use super::{Progress, Scope, spec_hash};
use crate::acme;
use crate::config::{HostConfig, Target};
use crate::error::Result;
use crate::failpoint;
use crate::gate::{self, Renewal, RenewalHold};
use crate::model::{Catalog, CertificateSpec, IssuerSpec, IssuerType, Kind, Loaded, Spec};
use crate::outputs;
use crate::pki::{self, Signer};
use crate::redact::Private;
use crate::status::{Change, Observed, ResourceOutcome, ResourceStatus, Statuses};
use crate::store::{Staged, Store, certificate_digest, certifies};

/// Logs `error` of `subject` in full, for the host, and returns what notes and the status
/// branch may say of it.
fn told(subject: &str, error: &impl Private) -> String {
    tracing::warn!(subject, %error, "failed");
    error.reason()
}

/// A CA ready to sign: its certificate, key and the chain above it.
struct CaSigner {
    certificate: String,
    /// Its private key, PEM (read back into a key pair for each signature).
    key: String,
    fingerprint: String,
    /// CA certificates from this one up to, not including, the root.
    intermediates: Vec<String>,
    /// The root at the top of the chain.
    root: String,
}

/// The contents of a certificate's files.
struct OwnedFiles {
    cert: String,
    chain: String,
    ca: Option<String>,
    key: String,
}

/// Files to write for a certificate, and the status that records them.
struct FilesToWrite {
    target: Target,
    files: OwnedFiles,
    status: ResourceStatus,
    change: Change,
    /// The target the files were written to before, when the certificate moved: its files
    /// are removed once the new ones are written, where that target prunes.
    moved_from: Option<Target>,
}

/// Where a certificate comes from.
enum Source {
    /// A CA of the repository, signing here.
    Ca(Arc<CaSigner>),
    /// An ACME account of the host config.
    Acme(String),
}

impl Source {
    /// The fingerprint of the issuing CA's certificate, when gitward holds it: a change of it
    /// means reissuing.
    fn fingerprint(&self) -> Option<&str> {
        match self {
            Source::Ca(signer) => Some(&signer.fingerprint),
            Source::Acme(_) => None,
        }
    }
}

/// Why a certificate is issued now, or `None` to keep it.
fn why_issue(
    existing: Option<&ResourceStatus>,
    hash: &str,
    issuer_fingerprint: Option<&str>,
    key_present: bool,
    now: DateTime<Utc>,
) -> Option<Change> {
    let Some(existing) = existing else {
        return Some(Change::Issued);
    };
    if existing.spec_hash != hash
        || existing.issuer_fingerprint.as_deref() != issuer_fingerprint
        || !key_present
    {
        return Some(Change::Reissued);
    }
    (now >= existing.renew_at).then_some(Change::Renewed)
}

struct Applier<'a> {
    config: &'a HostConfig,
    store: &'a Store,
    observed: &'a Observed,
    now: DateTime<Utc>,
    statuses: Statuses,
    outcomes: Vec<ResourceOutcome>,
    /// Resources whose staged key and certificate the status commit will name.
    issued: Vec<(Kind, String)>,
    /// Targets with files written this time.
    written: BTreeSet<String>,
    /// Problems not tied to one resource (a reload that failed).
    problems: Vec<String>,
    signers: HashMap<String, Arc<CaSigner>>,
    /// Issued this run, for the journal before anything uses them.
    to_stage: Vec<(Kind, String, Staged)>,
    /// Certificate files to write once what they hold is staged.
    to_write: Vec<FilesToWrite>,
    /// Keys and certificates ordered from ACME this run, or why the order failed.
    acme_issued: HashMap<String, std::result::Result<(KeyPair, String), String>>,
    progress: &'a dyn Progress,
    scope: Scope,
    /// Resources the commit changed compared with the one in force.
    changed: &'a HashSet<(Kind, String)>,
    /// No issuer changed in the commit or was issued again by this reconcile.
    issuers_settled: bool,
    /// Gates whose closed windows hold renewals back.
    holds: &'a [RenewalHold],
    /// The digest of each certificate this host made current, read when first needed (a
    /// reconcile of one change needs none).
    made_current: Option<HashMap<(Kind, String), String>>,
    /// Certificates of records from before the store kept digests, shown to be this host's.
    vouched_late: Vec<(Kind, String, String)>,
}

/// What an apply works with besides the catalog.
pub(super) struct Context<'a> {
    pub config: &'a HostConfig,
    pub store: &'a Store,
    pub observed: &'a Observed,
    pub now: DateTime<Utc>,
    pub progress: &'a dyn Progress,
    pub scope: Scope,
    pub holds: &'a [RenewalHold],
}

/// What applying a catalog did.
pub(super) struct Applied {
    /// Failures of resources, and problems not tied to one.
    pub problems: Vec<String>,
    pub outcomes: Vec<ResourceOutcome>,
    /// The statuses it leaves.
    pub statuses: Statuses,
    /// The resources whose staged key and certificate the status commit names.
    pub issued: Vec<(Kind, String)>,
}

/// Applies `catalog`, looking again at what `changed` names and at what is due.
pub(super) fn apply(
    context: &Context<'_>,
    catalog: &Catalog,
    changed: &HashSet<(Kind, String)>,
) -> Result<Applied> {
    let mut applier = Applier {
        config: context.config,
        store: context.store,
        observed: context.observed,
        now: context.now,
        statuses: BTreeMap::new(),
        outcomes: Vec::new(),
        issued: Vec::new(),
        written: BTreeSet::new(),
        problems: Vec::new(),
        signers: HashMap::new(),
        acme_issued: HashMap::new(),
        to_stage: Vec::new(),
        to_write: Vec::new(),
        progress: context.progress,
        scope: context.scope,
        changed,
        issuers_settled: false,
        holds: context.holds,
        made_current: None,
        vouched_late: Vec::new(),
    };
    applier.apply(catalog)?;
    context.store.record_issued(&applier.vouched_late)?;
    let mut problems: Vec<String> = applier
        .outcomes
        .iter()
        .filter(|o| o.change == Change::Failed)
        .map(|o| format!("{}/{}: {}", o.kind, o.name, o.message))
        .collect();
    problems.extend(applier.problems);
    Ok(Applied {
        problems,
        outcomes: applier.outcomes,
        statuses: applier.statuses,
        issued: applier.issued,
    })
}

impl CaSigner {
    /// Signs with this CA.
    fn sign<T>(
        &self,
        with: impl FnOnce(&Signer<'_>) -> std::result::Result<T, pki::PkiError>,
    ) -> std::result::Result<T, pki::PkiError> {
        let key = pki::load_key(&self.key)?;
        let signer = Signer::new(&self.certificate, &key)?;
        with(&signer)
    }
}

/// A certificate issued or kept, ready to be placed in its target.
struct Placed<'a> {
    target: &'a Target,
    status: ResourceStatus,
    existing: Option<&'a Arc<ResourceStatus>>,
    /// Its new key (PEM), or `None` for the one in the store.
    new_key: Option<String>,
    /// The certificate, its chain and the root, as written.
    files: (String, String, Option<String>),
}

/// Certificates whose files are held before they are journaled and written.
const WRITE_BATCH: usize = 256;

impl Applier<'_> {
    fn apply(&mut self, catalog: &Catalog) -> Result<()> {
        self.progress.step("issuers");
        let mut issuers: Vec<&Loaded> = catalog.of_kind(Kind::Issuer).collect();
        // Parents before the CAs they sign.
        issuers.sort_by_key(|l| catalog.ancestors(l.name()).len());
        for loaded in issuers {
            if let Spec::Issuer(spec) = &loaded.resource.spec {
                self.issuer(loaded, spec)?;
            }
        }
        self.issuers_settled = !self.changed.iter().any(|(kind, _)| *kind == Kind::Issuer)
            && self
                .outcomes
                .iter()
                .all(|o| o.kind != Kind::Issuer || o.change == Change::Unchanged);
        self.stage()?;
        self.order_acme(catalog)?;
        self.progress
            .start(catalog.of_kind(Kind::Certificate).count());
        for (done, loaded) in catalog.of_kind(Kind::Certificate).enumerate() {
            if let Spec::Certificate(spec) = &loaded.resource.spec {
                self.progress.certificate(done, loaded.name());
                self.certificate(catalog, loaded, spec)?;
            }
            // Journaled and written a batch at a time: the keys and files of thousands of new
            // certificates are not all held at once.
            if self.to_write.len() >= WRITE_BATCH {
                self.stage()?;
                self.write_files();
            }
        }
        self.progress.step("writing files");
        self.stage()?;
        self.write_files();
        self.remove_deleted(catalog)?;
        self.progress.step("reloading");
        self.reload();
        self.outcomes
            .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(())
    }

    /// Journals what was issued since the last call, in one transaction.
    fn stage(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.to_stage);
        if !batch.is_empty() {
            self.store.stage(&batch)?;
        }
        Ok(())
    }

    /// Writes the files of every certificate that needs them.
    fn write_files(&mut self) {
        for FilesToWrite {
            target,
            files,
            mut status,
            change,
            moved_from,
        } in std::mem::take(&mut self.to_write)
        {
            let (kind, name) = (status.kind, status.name.clone());
            let serial = Some(status.serial.clone());
            let written = outputs::write(
                &target,
                &name,
                &outputs::Files {
                    cert: &files.cert,
                    chain: &files.chain,
                    ca: files.ca.as_deref(),
                    key: &files.key,
                },
            );
            match written {
                Ok(()) => {
                    failpoint::point("outputs written");
                    if let Some(target) = &status.target {
                        self.written.insert(target.clone());
                    }
                    status.set_condition("Ready", true, "Written", String::new(), self.now);
                    let mut message = String::new();
                    if let Some(old) = moved_from.filter(|old| old.prune)
                        && let Err(e) = outputs::remove(&old, &name)
                    {
                        message = told(&format!("{kind}/{name}: the files it moved from"), &e);
                    }
                    self.outcome(kind, &name, change, serial, message);
                }
                Err(e) => {
                    let reason = told(&format!("{kind}/{name}"), &e);
                    status.set_condition("Ready", false, "WriteFailed", reason.clone(), self.now);
                    self.outcome(kind, &name, Change::Failed, serial, reason);
                }
            }
            self.statuses.insert((kind, name), Arc::new(status));
        }
    }

    fn outcome(
        &mut self,
        kind: Kind,
        name: &str,
        change: Change,
        serial: Option<String>,
        message: String,
    ) {
        self.outcomes.push(ResourceOutcome {
            kind,
            name: name.to_owned(),
            change,
            serial,
            message,
        });
    }

    /// Records `existing` as this reconcile's status of its resource, unchanged.
    fn keep(&mut self, existing: &Arc<ResourceStatus>) {
        self.statuses
            .insert((existing.kind, existing.name.clone()), existing.clone());
        self.outcome(
            existing.kind,
            &existing.name,
            Change::Unchanged,
            Some(existing.serial.clone()),
            String::new(),
        );
    }

    /// Issues (or reuses what a crashed run staged) a key and certificate; the journal gets it
    /// with the next [`Self::stage`].
    fn issue(
        &mut self,
        kind: Kind,
        name: &str,
        hash: &str,
        issuer_fingerprint: Option<&str>,
        make: impl FnOnce() -> std::result::Result<(KeyPair, String), pki::PkiError>,
    ) -> std::result::Result<(KeyPair, String), String> {
        let reusable = self
            .reusable(kind, name, hash, issuer_fingerprint)
            .map_err(|e| told(&format!("{kind}/{name}"), &e))?;
        if let Some(staged) = reusable {
            let key = pki::load_key(&staged.key).map_err(|e| e.to_string())?;
            self.issued.push((kind, name.to_owned()));
            return Ok((key, staged.certificate));
        }
        let (key, certificate) = make().map_err(|e| e.to_string())?;
        let info = pki::inspect(&certificate).map_err(|e| e.to_string())?;
        failpoint::point("certificate signed");
        let staged = Staged {
            spec_hash: hash.to_owned(),
            issuer_fingerprint: issuer_fingerprint.map(str::to_owned),
            certificate: certificate.clone(),
            serial: info.serial,
            key: pki::key_pem(&key),
        };
        self.to_stage.push((kind, name.to_owned(), staged));
        self.issued.push((kind, name.to_owned()));
        Ok((key, certificate))
    }

    fn issuer(&mut self, loaded: &Loaded, spec: &IssuerSpec) -> Result<()> {
        let name = loaded.name();
        let (parent, key_algorithm, duration) = match spec.issuer_type() {
            Some(IssuerType::SelfSigned(s)) => (None, s.key_algorithm, s.duration),
            Some(IssuerType::Ca(c)) => (Some(c.issuer_ref.as_str()), c.key_algorithm, c.duration),
            // An ACME issuer has no certificate or key of its own.
            _ => return Ok(()),
        };
        if let Some(parent) = parent
            && !self.signers.contains_key(parent)
        {
            self.outcome(
                Kind::Issuer,
                name,
                Change::Failed,
                None,
                format!("its issuer `{parent}` is not available"),
            );
            return Ok(());
        }
        let hash = spec_hash(&spec.significant_fields());
        let parent_fingerprint = parent
            .and_then(|p| self.signers.get(p))
            .map(|s| s.fingerprint.clone());
        let key = self.store.key(Kind::Issuer, name)?;
        let existing = self
            .observed
            .resources
            .get(&(Kind::Issuer, name.to_owned()));
        let why = self.unless_held(
            loaded,
            why_issue(
                existing.map(Arc::as_ref),
                &hash,
                parent_fingerprint.as_deref(),
                key.is_some(),
                self.now,
            ),
            existing.map(Arc::as_ref),
        );
        let why = self.unless_forged(why, existing);
        let parent_signer = parent.and_then(|p| self.signers.get(p)).cloned();
        let (key, certificate, change) = match (why, existing, key) {
            (None, Some(existing), Some(key)) => {
                (key, existing.certificate.clone(), Change::Unchanged)
            }
            (why, _, _) => {
                let now = self.now;
                let made = match (spec.issuer_type(), &parent_signer) {
                    (Some(IssuerType::SelfSigned(s)), _) => {
                        self.issue(Kind::Issuer, name, &hash, None, || {
                            let key = pki::generate_key(key_algorithm)?;
                            let pem = pki::issue_root(s, &key, now)?;
                            Ok((key, pem))
                        })
                    }
                    (Some(IssuerType::Ca(c)), Some(parent)) => {
                        self.issue(Kind::Issuer, name, &hash, Some(&parent.fingerprint), || {
                            let key = pki::generate_key(key_algorithm)?;
                            let pem = parent
                                .sign(|signer| pki::issue_intermediate(c, &key, signer, now))?;
                            Ok((key, pem))
                        })
                    }
                    _ => Err("no issuer to sign it".to_owned()),
                };
                match made {
                    Ok((key, certificate)) => (
                        pki::key_pem(&key),
                        certificate,
                        why.unwrap_or(Change::Reissued),
                    ),
                    Err(message) => {
                        self.outcome(Kind::Issuer, name, Change::Failed, None, message);
                        return Ok(());
                    }
                }
            }
        };
        let Ok(info) = pki::inspect(&certificate) else {
            self.outcome(
                Kind::Issuer,
                name,
                Change::Failed,
                None,
                "its certificate cannot be read".to_owned(),
            );
            return Ok(());
        };
        let (intermediates, root) = match &parent_signer {
            Some(p) => {
                let mut chain = vec![certificate.clone()];
                chain.extend(p.intermediates.iter().cloned());
                (chain, p.root.clone())
            }
            None => (Vec::new(), certificate.clone()),
        };
        let renew_at = info.not_after
            - chrono::Duration::seconds(i64::try_from(duration.as_secs() / 3).unwrap_or(i64::MAX));
        let mut status = ResourceStatus {
            kind: Kind::Issuer,
            name: name.to_owned(),
            spec_hash: hash,
            issuer: parent.map(str::to_owned),
            issuer_fingerprint: parent_fingerprint,
            serial: info.serial.clone(),
            fingerprint: info.fingerprint.clone(),
            not_before: info.not_before,
            not_after: info.not_after,
            renew_at,
            key_algorithm,
            target: None,
            certificate: certificate.clone(),
            conditions: existing.map(|e| e.conditions.clone()).unwrap_or_default(),
        };
        status.set_condition("Ready", true, "Issued", String::new(), self.now);
        self.statuses
            .insert((Kind::Issuer, name.to_owned()), Arc::new(status));
        self.outcome(Kind::Issuer, name, change, Some(info.serial), String::new());
        self.signers.insert(
            name.to_owned(),
            Arc::new(CaSigner {
                certificate,
                key,
                fingerprint: info.fingerprint,
                intermediates,
                root,
            }),
        );
        Ok(())
    }

    /// Where certificate `spec` comes from, or why it cannot be issued.
    fn source(&self, catalog: &Catalog, spec: &CertificateSpec) -> Result<Source, String> {
        let issuer = spec.issuer_ref.as_str();
        if let Some(signer) = self.signers.get(issuer) {
            return Ok(Source::Ca(signer.clone()));
        }
        match catalog.issuer(issuer).and_then(IssuerSpec::issuer_type) {
            Some(IssuerType::Acme(acme)) => {
                let account = acme.account.as_str();
                if self.config.acme.keys().any(|a| a.as_str() == account) {
                    Ok(Source::Acme(account.to_owned()))
                } else {
                    Err(format!(
                        "ACME account `{account}` (issuer `{issuer}`) is not granted in the host config"
                    ))
                }
            }
            _ => Err(format!("its issuer `{issuer}` is not available")),
        }
    }

    /// Whether certificate `name`, whose spec hashes to `hash`, is issued now, given what
    /// status and the store hold.
    fn certificate_due(&self, loaded: &Loaded, hash: &str, source: &Source) -> Option<Change> {
        let (kind, name) = (Kind::Certificate, loaded.name());
        let existing = self.observed.resources.get(&(kind, name.to_owned()));
        let key_present = self.scope == Scope::Changes || self.store.has_key(kind, name);
        let why = why_issue(
            existing.map(Arc::as_ref),
            hash,
            source.fingerprint(),
            key_present,
            self.now,
        );
        self.unless_held(loaded, why, existing.map(Arc::as_ref))
    }

    /// `why`, or a reissue when status records a certificate this host did not make current:
    /// in a repository worked on in place anyone who can push writes the status branch, and
    /// a certificate planted there must never be signed with, written or served.
    fn unless_forged(
        &mut self,
        why: Option<Change>,
        existing: Option<&Arc<ResourceStatus>>,
    ) -> Option<Change> {
        match existing {
            Some(existing) if why.is_none() && !self.vouched(existing) => {
                tracing::warn!(
                    kind = %existing.kind,
                    resource = %crate::diag::escaped(&existing.name),
                    "status records a certificate this host did not make current; issuing it again"
                );
                Some(Change::Reissued)
            }
            _ => why,
        }
    }

    /// Whether the certificate `existing` records is one this host made current: its digest
    /// is in the store, or, for a record from before the store kept digests, it is for the key
    /// the store holds (and is recorded from now on).
    fn vouched(&mut self, existing: &ResourceStatus) -> bool {
        let digest = certificate_digest(&existing.certificate);
        let (kind, name) = (existing.kind, existing.name.clone());
        let store = self.store;
        let made_current = self.made_current.get_or_insert_with(|| {
            store.issued().unwrap_or_else(|error| {
                tracing::warn!(%error, "the certificates made current cannot be read; checking keys instead");
                HashMap::new()
            })
        });
        if let Some(recorded) = made_current.get(&(kind, name.clone())) {
            return *recorded == digest;
        }
        let ours = self
            .store
            .key(kind, &name)
            .ok()
            .flatten()
            .is_some_and(|key| certifies(&existing.certificate, &key));
        if ours {
            self.vouched_late.push((kind, name, digest));
        }
        ours
    }

    /// `why`, unless it is a renewal that a gate's closed window holds back.
    fn unless_held(
        &self,
        loaded: &Loaded,
        why: Option<Change>,
        existing: Option<&ResourceStatus>,
    ) -> Option<Change> {
        match (why, existing) {
            (Some(Change::Renewed), Some(existing)) => {
                let labels = &loaded.resource.metadata.labels;
                match gate::renewal(
                    self.holds,
                    loaded.kind(),
                    labels,
                    existing.not_after,
                    self.now,
                ) {
                    Renewal::Held(_) => None,
                    Renewal::Go | Renewal::Forced(_) => why,
                }
            }
            _ => why,
        }
    }

    /// The current key of certificate `name` when the spec asks to keep it across renewals
    /// and it is still of the right algorithm; `None` means a new key.
    fn kept_key(&self, name: &str, spec: &CertificateSpec) -> Option<KeyPair> {
        if spec.rotate_private_key {
            return None;
        }
        let pem = self.store.key(Kind::Certificate, name).ok().flatten()?;
        pki::load_key(&pem)
            .ok()
            .filter(|k| pki::key_matches(k, spec.key_algorithm))
    }

    /// Orders, all at once, every ACME certificate that is due and not already staged by an
    /// interrupted run; [`Self::certificate`] then takes the results from `acme_issued`.
    fn order_acme(&mut self, catalog: &Catalog) -> Result<()> {
        let mut batches: BTreeMap<String, Vec<acme::Request>> = BTreeMap::new();
        let mut keys = HashMap::new();
        for loaded in catalog.of_kind(Kind::Certificate) {
            let Spec::Certificate(spec) = &loaded.resource.spec else {
                continue;
            };
            let name = loaded.name();
            let Ok(Source::Acme(account)) = self.source(catalog, spec) else {
                continue;
            };
            let hash = spec_hash(&spec.significant_fields());
            if self
                .certificate_due(loaded, &hash, &Source::Acme(account.clone()))
                .is_none()
                || self
                    .reusable(Kind::Certificate, name, &hash, None)?
                    .is_some()
            {
                continue;
            }
            // An order an interrupted run recorded is finished with the key it was made for.
            let recorded = self
                .store
                .recorded_order(name)?
                .filter(|o| o.account == account && o.spec_hash == hash);
            let key = match (&recorded, self.kept_key(name, spec)) {
                (Some(order), _) => pki::load_key(&order.key),
                (None, Some(key)) => Ok(key),
                (None, None) => pki::generate_key(spec.key_algorithm),
            };
            let request = key.and_then(|key| Ok((pki::signing_request(spec, &key)?, key)));
            match request {
                Ok((csr, key)) => {
                    let mut request = acme::Request::new(name, spec, hash, csr, pki::key_pem(&key));
                    request.resume = recorded.map(|o| o.url);
                    batches.entry(account).or_default().push(request);
                    keys.insert(name.to_owned(), key);
                }
                Err(e) => {
                    self.acme_issued.insert(name.to_owned(), Err(e.to_string()));
                }
            }
        }
        for (account, requests) in batches {
            let Some(config) = self
                .config
                .acme
                .iter()
                .find(|(n, _)| n.as_str() == account)
                .map(|(_, c)| c)
            else {
                continue;
            };
            self.progress.step(&format!(
                "ordering {} certificate(s) from ACME account `{account}`",
                requests.len()
            ));
            for (name, issued) in acme::issue(&account, config, self.store, requests) {
                let issued = issued.and_then(|bundle| {
                    keys.remove(&name)
                        .map(|key| (key, bundle))
                        .ok_or_else(|| "the CA answered for a certificate not ordered".to_owned())
                });
                self.acme_issued.insert(name, issued);
            }
        }
        Ok(())
    }

    /// What an interrupted run staged for this resource, if it is still what is wanted.
    fn reusable(
        &self,
        kind: Kind,
        name: &str,
        hash: &str,
        issuer_fingerprint: Option<&str>,
    ) -> Result<Option<Staged>, crate::store::StoreError> {
        Ok(self.store.staged(kind, name)?.filter(|s| {
            s.spec_hash == hash && s.issuer_fingerprint.as_deref() == issuer_fingerprint
        }))
    }

    fn certificate(
        &mut self,
        catalog: &Catalog,
        loaded: &Loaded,
        spec: &CertificateSpec,
    ) -> Result<()> {
        let name = loaded.name();
        let kind = Kind::Certificate;
        let observed = self.observed;
        let existing = observed.resources.get(&(kind, name.to_owned()));
        let renew_before =
            i64::try_from(spec.effective_renew_before().as_secs()).unwrap_or(i64::MAX);
        // A commit-triggered reconcile takes what status records as it stands when the
        // certificate is ready, not due, and written where its spec says; it checks no files.
        let settled = existing.filter(|e| {
            self.scope == Scope::Changes
                && e.target.as_deref() == Some(spec.target.as_str())
                && e.renew_at == e.not_after - chrono::Duration::seconds(renew_before)
                && self.now < e.renew_at
                && e.condition("Ready").is_some_and(|c| c.status == "True")
        });
        // Unchanged by the commit and under unchanged issuers: not even its spec is hashed.
        if let Some(existing) = settled
            && self.issuers_settled
            && !self.changed.contains(&(kind, name.to_owned()))
        {
            self.keep(existing);
            return Ok(());
        }
        let fail = |this: &mut Self, message: String| this.fail(kind, name, existing, message);
        let config = self.config;
        let Some(target) = config.targets.get(&spec.target) else {
            fail(
                self,
                format!("target `{}` is not granted in the host config", spec.target),
            );
            return Ok(());
        };
        let source = match self.source(catalog, spec) {
            Ok(source) => source,
            Err(message) => {
                fail(self, message);
                return Ok(());
            }
        };
        let hash = spec_hash(&spec.significant_fields());
        let why = self.certificate_due(loaded, &hash, &source);
        let why = self.unless_forged(why, existing);
        if let Some(existing) = settled
            && why.is_none()
        {
            self.keep(existing);
            return Ok(());
        }
        // A new key, or `None` for the one in force (read only if the files need writing).
        let (new_key, certificate, change) = match (why, &existing) {
            (None, Some(existing)) => (None, existing.certificate.clone(), Change::Unchanged),
            (why, _) => match self.issue_certificate(name, spec, &hash, &source) {
                Ok((key, certificate)) => (
                    Some(pki::key_pem(&key)),
                    certificate,
                    why.unwrap_or(Change::Reissued),
                ),
                Err(message) => {
                    fail(self, message);
                    return Ok(());
                }
            },
        };
        let info = match (&existing, change) {
            (Some(existing), Change::Unchanged) => pki::CertificateInfo {
                serial: existing.serial.clone(),
                fingerprint: existing.fingerprint.clone(),
                not_before: existing.not_before,
                not_after: existing.not_after,
            },
            _ => match pki::inspect(&certificate) {
                Ok(info) => info,
                Err(_) => {
                    fail(self, "the certificate cannot be read".to_owned());
                    return Ok(());
                }
            },
        };
        // A CA's chain comes from the issuers above it; an ACME CA sends its chain with the
        // certificate, and status keeps the two together.
        let (leaf, chain, root) = match &source {
            Source::Ca(signer) => (
                certificate.clone(),
                signer.intermediates.concat(),
                Some(signer.root.clone()),
            ),
            Source::Acme(_) => {
                let (leaf, chain) = pki::split_chain(&certificate);
                (leaf, chain, None)
            }
        };
        let status = ResourceStatus {
            kind,
            name: name.to_owned(),
            spec_hash: hash,
            issuer: Some(spec.issuer_ref.to_string()),
            issuer_fingerprint: source.fingerprint().map(str::to_owned),
            serial: info.serial.clone(),
            fingerprint: info.fingerprint,
            not_before: info.not_before,
            not_after: info.not_after,
            renew_at: info.not_after - chrono::Duration::seconds(renew_before),
            key_algorithm: spec.key_algorithm,
            target: Some(spec.target.to_string()),
            certificate: certificate.clone(),
            conditions: existing
                .as_ref()
                .map(|e| e.conditions.clone())
                .unwrap_or_default(),
        };
        self.place(
            Placed {
                target,
                status,
                existing,
                new_key,
                files: (leaf, chain, root),
            },
            change,
        )
    }

    /// Issues certificate `name` from its source: signed here by a CA of the repository
    /// (keeping the key when the spec asks to), or as ordered from ACME beforehand.
    fn issue_certificate(
        &mut self,
        name: &str,
        spec: &CertificateSpec,
        hash: &str,
        source: &Source,
    ) -> std::result::Result<(KeyPair, String), String> {
        let kind = Kind::Certificate;
        match source {
            Source::Ca(signer) => {
                let kept = self.kept_key(name, spec);
                let now = self.now;
                self.issue(kind, name, hash, source.fingerprint(), || {
                    let key = match kept {
                        Some(key) => key,
                        None => pki::generate_key(spec.key_algorithm)?,
                    };
                    let pem = signer.sign(|s| pki::issue_leaf(spec, &key, s, now))?;
                    Ok((key, pem))
                })
            }
            Source::Acme(_) => {
                let ordered = self.acme_issued.remove(name);
                self.issue(kind, name, hash, None, || match ordered {
                    Some(Ok(issued)) => Ok(issued),
                    Some(Err(message)) => Err(pki::PkiError::Acme(message)),
                    None => Err(pki::PkiError::Acme("it was not ordered".to_owned())),
                })
            }
        }
    }

    /// Records `existing` as failed with `message`: what was in force stays recorded, status
    /// never forgets a certificate it knows.
    fn fail(
        &mut self,
        kind: Kind,
        name: &str,
        existing: Option<&Arc<ResourceStatus>>,
        message: String,
    ) {
        if let Some(mut old) = existing.cloned() {
            Arc::make_mut(&mut old).set_condition(
                "Ready",
                false,
                "Failed",
                message.clone(),
                self.now,
            );
            self.statuses.insert((kind, name.to_owned()), old);
        }
        self.outcome(kind, name, Change::Failed, None, message);
    }

    /// Writes a certificate's files when it is new, moved, or not what status says on disk;
    /// else records it as it is.
    fn place(&mut self, placed: Placed<'_>, change: Change) -> Result<()> {
        let Placed {
            target,
            mut status,
            existing,
            new_key,
            files: (leaf, chain, root),
        } = placed;
        let (kind, name) = (status.kind, status.name.clone());
        let name = name.as_str();
        let config = self.config;
        let on_disk = outputs::read_certificate(target, name);
        let moved_from = existing
            .and_then(|e| e.target.as_deref())
            .filter(|old| Some(*old) != status.target.as_deref())
            .and_then(|old| config.targets.iter().find(|(n, _)| n.as_str() == old))
            .map(|(_, target)| target)
            .cloned();
        let change = match (change, on_disk.as_deref() == Some(leaf.as_str())) {
            (Change::Unchanged, _) if moved_from.is_some() => Change::Moved,
            (Change::Unchanged, true) => Change::Unchanged,
            (Change::Unchanged, false) => Change::Rewritten,
            (other, _) => other,
        };
        if change != Change::Unchanged {
            let key_pem = match new_key {
                Some(key) => key,
                None => match self.store.key(kind, name)? {
                    Some(key) => key,
                    None => {
                        self.fail(
                            kind,
                            name,
                            existing,
                            "its key is missing from the secret store".to_owned(),
                        );
                        return Ok(());
                    }
                },
            };
            self.to_write.push(FilesToWrite {
                target: target.clone(),
                files: OwnedFiles {
                    cert: leaf,
                    chain,
                    ca: root,
                    key: key_pem,
                },
                status,
                change,
                moved_from,
            });
            return Ok(());
        }
        if status.condition("Ready").is_none_or(|c| c.status != "True") {
            status.set_condition("Ready", true, "Written", String::new(), self.now);
        }
        let serial = status.serial.clone();
        self.statuses
            .insert((kind, name.to_owned()), Arc::new(status));
        self.outcome(kind, name, change, Some(serial), String::new());
        Ok(())
    }

    /// Status entries of resources no longer in the commit: gitward stops managing them;
    /// their files go only where the target prunes.
    fn remove_deleted(&mut self, catalog: &Catalog) -> Result<()> {
        let deleted: Vec<((Kind, String), Arc<ResourceStatus>)> = self
            .observed
            .resources
            .iter()
            .filter(|((kind, name), _)| catalog.get(*kind, name).is_none())
            .map(|(key, status)| (key.clone(), status.clone()))
            .collect();
        for ((kind, name), status) in deleted {
            if let Some(target) = status
                .target
                .as_deref()
                .and_then(|t| self.config.targets.iter().find(|(n, _)| n.as_str() == t))
                .map(|(_, t)| t.clone())
                && target.prune
                && let Err(e) = outputs::remove(&target, &name)
            {
                let reason = told(&format!("{kind}/{name}"), &e);
                self.outcome(kind, &name, Change::Failed, None, reason);
                self.statuses.insert((kind, name), status);
                continue;
            }
            self.store.forget(kind, &name)?;
            self.outcome(kind, &name, Change::Removed, None, String::new());
        }
        Ok(())
    }

    /// Runs the reload command of every target with new files, and of every target whose
    /// last reload failed; records the outcome on its certificates.
    fn reload(&mut self) {
        let mut due: BTreeSet<String> = self.written.clone();
        for status in self.statuses.values() {
            if status
                .condition("Reloaded")
                .is_some_and(|c| c.status == "False")
                && let Some(t) = &status.target
            {
                due.insert(t.clone());
            }
        }
        let targets: Vec<(String, Target)> = self
            .config
            .targets
            .iter()
            .filter(|(name, t)| due.contains(name.as_str()) && !t.reload.is_empty())
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        for (name, target) in targets {
            let timeout = std::time::Duration::from_secs(target.timeout.as_secs());
            let result = outputs::reload(&target.reload, timeout)
                .map_err(|e| told(&format!("target `{name}`"), &e));
            failpoint::point("reloaded");
            let now = self.now;
            for status in self
                .statuses
                .values_mut()
                .filter(|s| s.target.as_deref() == Some(name.as_str()))
            {
                let status = Arc::make_mut(status);
                match &result {
                    Ok(()) => {
                        status.set_condition("Reloaded", true, "Reloaded", String::new(), now)
                    }
                    Err(reason) => {
                        status.set_condition("Reloaded", false, "ReloadFailed", reason.clone(), now)
                    }
                }
            }
            if let Err(reason) = result {
                self.problems.push(format!("target `{name}`: {reason}"));
            }
        }
    }
}
