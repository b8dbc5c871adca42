//! The five resource kinds. The doc comment on every field is the user contract: it becomes
//! the field's description in `schemas/<kind>.schema.json`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::values::{
    DnsDomain, DnsName, Duration, KeyAlgorithm, Name, RepoPath, patterns, string_enum,
};

string_enum!(
    /// The kinds of resource a config repository holds.
    Kind {
        Issuer = "Issuer",
        Certificate = "Certificate",
        Policy = "Policy",
        Gate = "Gate",
        Sink = "Sink",
    }
);

impl Kind {
    /// The file stem of the kind's schema: `schemas/<stem>.schema.json`.
    pub fn schema_stem(self) -> &'static str {
        match self {
            Kind::Issuer => "issuer",
            Kind::Certificate => "certificate",
            Kind::Policy => "policy",
            Kind::Gate => "gate",
            Kind::Sink => "sink",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str().eq_ignore_ascii_case(text))
    }
}

/// Labels: short key/value pairs that policies and gates select on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(pub StringMap);

/// A small map of strings, sorted by key: every resource has one or two, and a `BTreeMap`
/// takes a node of eleven entries for the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringMap(Box<[(String, String)]>);

impl StringMap {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }
}

impl Serialize for StringMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(StringMap(map.into_iter().collect()))
    }
}

impl JsonSchema for StringMap {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "StringMap".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "object", "additionalProperties": {"type": "string"}})
    }
}

impl JsonSchema for Labels {
    fn schema_name() -> Cow<'static, str> {
        "Labels".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "Key/value labels, selected on by policies and gates (`env: prod`, `owner: payments`).",
            "propertyNames": {"pattern": patterns::LABEL_KEY, "maxLength": 253},
            "additionalProperties": {"type": "string", "pattern": patterns::LABEL_VALUE, "maxLength": 63},
        })
    }
}

/// Identity and labels of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Name of the resource, unique among resources of its kind.
    pub name: Name,
    /// Labels that policies and gates select on.
    #[serde(default)]
    pub labels: Labels,
    /// Free-form notes for people and tools; gitward does not interpret them.
    #[serde(default)]
    pub annotations: StringMap,
}

/// Subject attributes of a certificate besides its common name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subject {
    /// Organization (O).
    #[schemars(length(min = 1, max = 64))]
    pub organization: Option<String>,
    /// Organizational unit (OU).
    #[schemars(length(min = 1, max = 64))]
    pub organizational_unit: Option<String>,
    /// Two-letter country code (C).
    #[schemars(regex(pattern = "^[A-Z]{2}$"))]
    pub country: Option<String>,
    /// State or province (ST).
    #[schemars(length(min = 1, max = 128))]
    pub province: Option<String>,
    /// Locality or city (L).
    #[schemars(length(min = 1, max = 128))]
    pub locality: Option<String>,
}

fn default_ca_key() -> KeyAlgorithm {
    KeyAlgorithm::EcdsaP384
}

fn default_root_duration() -> Duration {
    Duration::from_secs(3650 * 86_400)
}

fn default_intermediate_duration() -> Duration {
    Duration::from_secs(1825 * 86_400)
}

/// An issuer of certificates. Set exactly one of `selfSigned`, `ca` or `acme`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend(
    "minProperties" = 1,
    "maxProperties" = 1,
    "errorMessage" = "an Issuer spec sets exactly one of `selfSigned`, `ca` or `acme`"
))]
pub struct IssuerSpec {
    /// A root CA whose certificate signs itself.
    pub self_signed: Option<SelfSignedIssuer>,
    /// An intermediate CA signed by another issuer of this repository.
    pub ca: Option<CaIssuer>,
    /// A public or private ACME CA (Let's Encrypt, step-ca...) reached through an account that
    /// the host config defines.
    pub acme: Option<AcmeIssuer>,
}

/// Which of the three issuer types an [`IssuerSpec`] is.
#[derive(Debug, Clone, Copy)]
pub enum IssuerType<'a> {
    SelfSigned(&'a SelfSignedIssuer),
    Ca(&'a CaIssuer),
    Acme(&'a AcmeIssuer),
}

impl IssuerSpec {
    /// The issuer's type; `None` only for a spec that sets none or several, which the schema
    /// rejects.
    pub fn issuer_type(&self) -> Option<IssuerType<'_>> {
        match (&self.self_signed, &self.ca, &self.acme) {
            (Some(s), None, None) => Some(IssuerType::SelfSigned(s)),
            (None, Some(c), None) => Some(IssuerType::Ca(c)),
            (None, None, Some(a)) => Some(IssuerType::Acme(a)),
            _ => None,
        }
    }

    /// The issuer this one is signed by, for intermediates.
    pub fn parent(&self) -> Option<&Name> {
        self.ca.as_ref().map(|c| &c.issuer_ref)
    }

    /// Whether this issuer holds a CA key that can sign other CAs and certificates.
    pub fn is_ca(&self) -> bool {
        self.acme.is_none()
    }

    pub fn path_len(&self) -> Option<u8> {
        self.ca.as_ref().and_then(|c| c.path_len)
    }

    pub fn permitted_dns_domains(&self) -> &[DnsDomain] {
        self.ca.as_ref().map_or(&[], |c| &c.permitted_dns_domains)
    }

    /// See [`CertificateSpec::significant_fields`]; the issuer type counts too.
    pub fn significant_fields(&self) -> Significant {
        match self.issuer_type() {
            Some(IssuerType::SelfSigned(s)) => Significant::from([
                ("type", value(&"selfSigned")),
                ("commonName", value(&s.common_name)),
                ("subject", value(&s.subject)),
                ("keyAlgorithm", value(&s.key_algorithm)),
                ("duration", value(&s.duration)),
            ]),
            Some(IssuerType::Ca(c)) => Significant::from([
                ("type", value(&"ca")),
                ("issuerRef", value(&c.issuer_ref)),
                ("commonName", value(&c.common_name)),
                ("subject", value(&c.subject)),
                ("keyAlgorithm", value(&c.key_algorithm)),
                ("duration", value(&c.duration)),
                ("pathLen", value(&c.path_len)),
                ("permittedDnsDomains", sorted(&c.permitted_dns_domains)),
            ]),
            Some(IssuerType::Acme(a)) => {
                Significant::from([("type", value(&"acme")), ("account", value(&a.account))])
            }
            None => Significant::new(),
        }
    }
}

/// A self-signed root CA. Its private key is generated on first reconcile and never leaves
/// the host's secret store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelfSignedIssuer {
    /// Common name (CN) of the CA certificate.
    #[schemars(length(min = 1, max = 64))]
    pub common_name: String,
    /// Other subject attributes.
    pub subject: Option<Subject>,
    /// Key algorithm of the CA key.
    #[serde(default = "default_ca_key")]
    pub key_algorithm: KeyAlgorithm,
    /// Validity of the CA certificate.
    #[serde(default = "default_root_duration")]
    pub duration: Duration,
}

/// An intermediate CA signed by another issuer of this repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaIssuer {
    /// Name of the issuer (`selfSigned` or `ca`) that signs this CA.
    pub issuer_ref: Name,
    /// Common name (CN) of the CA certificate.
    #[schemars(length(min = 1, max = 64))]
    pub common_name: String,
    /// Other subject attributes.
    pub subject: Option<Subject>,
    /// Key algorithm of the CA key.
    #[serde(default = "default_ca_key")]
    pub key_algorithm: KeyAlgorithm,
    /// Validity of the CA certificate.
    #[serde(default = "default_intermediate_duration")]
    pub duration: Duration,
    /// How many CAs may follow this one in a chain (basicConstraints pathLenConstraint);
    /// 0 lets it sign end-entity certificates only. Unset means unlimited.
    #[schemars(range(max = 16))]
    pub path_len: Option<u8>,
    /// DNS name constraints: certificates under this CA may only name these domains and their
    /// subdomains. Empty means unconstrained.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true))]
    pub permitted_dns_domains: Vec<DnsDomain>,
}

/// An ACME issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AcmeIssuer {
    /// Name of an ACME account in the host config (directory URL, contact, account key,
    /// trusted roots and http-01 listener are set there, not in the repository).
    pub account: Name,
}

string_enum!(
    /// Extended key usages a certificate is valid for.
    Usage {
        ServerAuth = "serverAuth",
        ClientAuth = "clientAuth",
        CodeSigning = "codeSigning",
        EmailProtection = "emailProtection",
        TimeStamping = "timeStamping",
        OcspSigning = "ocspSigning",
    }
);

fn default_leaf_key() -> KeyAlgorithm {
    KeyAlgorithm::EcdsaP256
}

fn default_leaf_duration() -> Duration {
    Duration::from_secs(90 * 86_400)
}

fn default_usages() -> Vec<Usage> {
    vec![Usage::ServerAuth]
}

fn default_true() -> bool {
    true
}

/// An IP address subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IpAddress(pub String);

impl JsonSchema for IpAddress {
    fn schema_name() -> Cow<'static, str> {
        "IpAddress".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": patterns::IP_ADDRESS,
            "maxLength": 45,
            "description": "An IPv4 or IPv6 address.",
        })
    }
}

impl fmt::Display for IpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TLS certificate that gitward issues, renews and writes to an output target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateSpec {
    /// Name of the Issuer that signs this certificate.
    pub issuer_ref: Name,
    /// Common name (CN); defaults to the first DNS name.
    #[schemars(length(min = 1, max = 64))]
    pub common_name: Option<String>,
    /// Other subject attributes.
    pub subject: Option<Subject>,
    /// DNS subject alternative names.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true))]
    pub dns_names: Vec<DnsName>,
    /// IP address subject alternative names.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true))]
    pub ip_addresses: Vec<IpAddress>,
    /// Key algorithm of the certificate's private key.
    #[serde(default = "default_leaf_key")]
    pub key_algorithm: KeyAlgorithm,
    /// Validity of each issued certificate.
    #[serde(default = "default_leaf_duration")]
    pub duration: Duration,
    /// How long before expiry to renew; one third of `duration` when unset.
    pub renew_before: Option<Duration>,
    /// Extended key usages.
    #[serde(default = "default_usages")]
    #[schemars(length(min = 1), extend("uniqueItems" = true))]
    pub usages: Vec<Usage>,
    /// Generate a new private key on each renewal.
    #[serde(default = "default_true")]
    pub rotate_private_key: bool,
    /// Name of an output target in the host config; files go to `<target dir>/<name>/`.
    pub target: Name,
}

/// Fields of a spec that an issued certificate reflects, by name, in a form where equal means
/// "the same certificate would be issued" (lists are sorted: order does not matter). The plan
/// names the fields that differ; the spec hash in status is the hash of these.
pub type Significant = BTreeMap<&'static str, serde_json::Value>;

fn sorted<T: Serialize>(items: &[T]) -> serde_json::Value {
    let mut values: Vec<serde_json::Value> = items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect();
    values.sort_by_key(|v| v.to_string());
    serde_json::Value::Array(values)
}

fn value<T: Serialize>(item: &T) -> serde_json::Value {
    serde_json::to_value(item).unwrap_or_default()
}

impl CertificateSpec {
    /// The common name issued: `commonName`, or the first DNS name.
    pub fn effective_common_name(&self) -> Option<&str> {
        self.common_name
            .as_deref()
            .or_else(|| self.dns_names.first().map(DnsName::as_str))
    }

    pub fn significant_fields(&self) -> Significant {
        Significant::from([
            ("issuerRef", value(&self.issuer_ref)),
            ("commonName", value(&self.effective_common_name())),
            ("subject", value(&self.subject)),
            ("dnsNames", sorted(&self.dns_names)),
            ("ipAddresses", sorted(&self.ip_addresses)),
            ("keyAlgorithm", value(&self.key_algorithm)),
            ("usages", sorted(&self.usages)),
            ("duration", value(&self.duration)),
        ])
    }

    /// `renewBefore`, or one third of the duration.
    pub fn effective_renew_before(&self) -> Duration {
        self.renew_before
            .unwrap_or(Duration::from_secs(self.duration.as_secs() / 3))
    }
}

string_enum!(
    /// What a policy finding does.
    Enforcement {
        Deny = "deny",
        Warn = "warn",
        Audit = "audit",
    }
);

string_enum!(
    /// How serious a finding or event is.
    FindingSeverity {
        Critical = "critical",
        High = "high",
        Medium = "medium",
        Low = "low",
        Info = "info",
    }
);

fn default_enforcement() -> Enforcement {
    Enforcement::Deny
}

fn default_severity() -> FindingSeverity {
    FindingSeverity::Medium
}

/// Label selector: every listed label must match; a list value matches any of its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelSelector(pub BTreeMap<String, SelectorValue>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SelectorValue {
    Equals(String),
    AnyOf(Vec<String>),
}

impl LabelSelector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|(key, wanted)| {
            labels.0.get(key).is_some_and(|have| match wanted {
                SelectorValue::Equals(v) => v == have,
                SelectorValue::AnyOf(vs) => vs.iter().any(|v| v == have),
            })
        })
    }
}

impl JsonSchema for LabelSelector {
    fn schema_name() -> Cow<'static, str> {
        "LabelSelector".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "Labels a resource must have: `{env: prod}` matches one value, `{env: [prod, staging]}` any of several.",
            "propertyNames": {"pattern": patterns::LABEL_KEY, "maxLength": 253},
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "pattern": patterns::LABEL_VALUE, "maxLength": 63},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "pattern": patterns::LABEL_VALUE, "maxLength": 63},
                    },
                ],
                "errorMessage": "a selector value is a label value or a list of label values",
            },
        })
    }
}

/// Which resources a policy or gate applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppliesTo {
    /// Resource kinds.
    #[schemars(length(min = 1), extend("uniqueItems" = true))]
    pub kinds: Vec<Kind>,
    /// Only resources whose labels match.
    pub selector: Option<LabelSelector>,
}

impl AppliesTo {
    pub fn matches(&self, kind: Kind, labels: &Labels) -> bool {
        self.kinds.contains(&kind) && self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }
}

/// A rule written in Rego, bound to the resources it checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    /// The `.rego` module that defines the rule, relative to the repository root.
    pub module: RepoPath,
    /// The rule to evaluate: a set of strings, or of objects `{msg, severity?, field?}`.
    #[schemars(regex(pattern = patterns::RULE))]
    pub rule: String,
    /// The resources the rule is evaluated on.
    pub applies_to: AppliesTo,
    /// `deny` blocks a change, `warn` reports it, `audit` only records it.
    #[serde(default = "default_enforcement")]
    pub enforcement: Enforcement,
    /// Severity of findings that do not set their own.
    #[serde(default = "default_severity")]
    pub severity: FindingSeverity,
    /// Control IDs the policy maps to, like `SOC2:CC6.1` or `ISO27001:A.8.24`.
    #[serde(default)]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 128)),
        extend("uniqueItems" = true)
    )]
    pub compliance: Vec<String>,
    /// What the policy is for, shown with its findings.
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// A page that explains the policy and how to fix its findings (SARIF `helpUri`).
    #[schemars(regex(pattern = "^https?://"), length(max = 2048))]
    pub url: Option<String>,
    /// Resources excused from this policy until a date.
    #[serde(default)]
    pub exceptions: Vec<PolicyException>,
}

/// A time-limited exception: findings of the policy on these resources are reported as
/// excepted and never block, until the end of `expires` (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyException {
    /// Resources by name (`api-example-com`) or kind and name (`Certificate/api-example-com`).
    #[schemars(length(min = 1), inner(regex(pattern = patterns::RESOURCE_REF)))]
    pub resources: Vec<String>,
    /// Why the finding is accepted for now.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// Who answers for the exception (a person or team).
    #[schemars(length(min = 1, max = 256))]
    pub owner: String,
    /// Last day the exception holds, `YYYY-MM-DD`.
    #[schemars(regex(pattern = patterns::DATE))]
    pub expires: String,
}

impl PolicyException {
    /// The kind (when given) and name of a `resources` entry.
    pub fn parse_reference(reference: &str) -> (Option<Kind>, &str) {
        match reference.split_once('/') {
            Some((kind, name)) => (Kind::parse(kind), name),
            None => (None, reference),
        }
    }

    /// Whether the exception names the resource.
    pub fn covers(&self, kind: Kind, name: &str) -> bool {
        self.resources.iter().any(|r| {
            let (k, n) = PolicyException::parse_reference(r);
            n == name && k.is_none_or(|k| k == kind)
        })
    }
}

string_enum!(
    /// A SARIF result level.
    SarifLevel {
        None = "none",
        Note = "note",
        Warning = "warning",
        Error = "error",
    }
);

string_enum!(
    /// Day of the week.
    Weekday {
        Mon = "Mon",
        Tue = "Tue",
        Wed = "Wed",
        Thu = "Thu",
        Fri = "Fri",
        Sat = "Sat",
        Sun = "Sun",
    }
);

string_enum!(
    /// Where approvals come from.
    ApprovalSource {
        Signatures = "signatures",
        Trailers = "trailers",
        Github = "github",
        Gitlab = "gitlab",
    }
);

string_enum!(
    /// A band of SARIF `security-severity` scores, as GitHub reads them.
    SecurityBand {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
);

impl SecurityBand {
    /// The lowest score in the band: critical 9.0, high 7.0, medium 4.0, low 0.1.
    pub fn lowest_score(self) -> f64 {
        match self {
            SecurityBand::Low => 0.1,
            SecurityBand::Medium => 4.0,
            SecurityBand::High => 7.0,
            SecurityBand::Critical => 9.0,
        }
    }
}

string_enum!(
    /// Whether renewals wait for a gate's window.
    RenewalRule {
        Anytime = "anytime",
        FollowWindow = "followWindow",
    }
);

/// A checkpoint that changes to the resources it applies to must pass before they are applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GateSpec {
    /// The resources whose changes pass through this gate.
    pub applies_to: AppliesTo,
    /// What a change must meet.
    pub require: GateRequirements,
    /// How a named person can let a change through anyway.
    #[serde(rename = "override")]
    pub override_: Option<GateOverride>,
    /// How long the gate may block the branch before that is a problem of its own: a
    /// `gate.blocked` event that opens it (ticket sinks file a ticket, PagerDuty pages), and
    /// a `gate.unblocked` event when the gate lets the branch through again. Unset: a
    /// blocked gate is told, never opened as a problem.
    pub open_after: Option<Duration>,
}

/// Requirements of a gate; all that are set must be met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend(
    "anyOf" = [
        {"required": ["violations"]},
        {"required": ["scans"]},
        {"required": ["approvals"]},
        {"required": ["signedBy"]},
        {"required": ["window"]},
        {"required": ["change"]},
    ],
    "errorMessage" = "a gate requires at least one of `violations`, `scans`, `approvals`, `signedBy`, `window` or `change`"
))]
pub struct GateRequirements {
    /// Most policy findings allowed on the affected resources, by enforcement.
    pub violations: Option<ViolationLimits>,
    /// SARIF reports committed in the repository.
    pub scans: Option<ScanRequirement>,
    /// Verified approvals of the tree that is applied.
    pub approvals: Option<ApprovalRequirement>,
    /// The applied commit must be SSH-signed by one of these principals.
    #[serde(default)]
    #[schemars(
        inner(regex(pattern = patterns::PRINCIPAL)),
        extend("uniqueItems" = true)
    )]
    pub signed_by: Vec<String>,
    /// When changes may be applied.
    pub window: Option<ChangeWindow>,
    /// A change request the applied commit names (`Change-Request: CHG0012345`), approved and
    /// scheduled in ServiceNow, or in one of the given statuses in Jira.
    pub change: Option<ChangeRequirement>,
    /// `anytime`: renewals go on outside the window; `followWindow`: they wait for it, unless
    /// the certificate is within `expiryMargin` of its expiry.
    #[serde(default = "default_renewal_rule")]
    pub renewals: RenewalRule,
    /// How close to expiry a renewal goes ahead whatever the window says.
    #[serde(default = "default_expiry_margin")]
    pub expiry_margin: Duration,
}

string_enum!(
    /// Where change requests are kept.
    ChangeSystem {
        ServiceNow = "servicenow",
        Jira = "jira",
    }
);

/// A change request the applied commit must name, read from the system that keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangeRequirement {
    /// `servicenow` (a `change_request`, by number like `CHG0012345`) or `jira` (an issue, by
    /// key like `OPS-123`).
    pub system: ChangeSystem,
    /// Name of an endpoint in the host config: the instance's URL and the credential that
    /// reads change requests.
    pub endpoint: Name,
    /// States that let the change through, compared without case: ServiceNow's
    /// `change_request` state as shown (like `Scheduled`, `Implement`), Jira status names.
    #[schemars(
        length(min = 1),
        inner(length(min = 1, max = 100)),
        extend("uniqueItems" = true)
    )]
    pub states: Vec<String>,
    /// The trailer of the applied commit that names the change request.
    #[serde(default = "default_change_trailer")]
    #[schemars(regex(pattern = patterns::TRAILER))]
    pub trailer: String,
    /// Jira only: the fields that hold the planned start and end (Jira has none of its own);
    /// without them only the status is checked. ServiceNow's are `start_date` and `end_date`.
    pub window: Option<ChangeWindowFields>,
    /// Jira only, and required there: the projects whose issues are change requests (anyone
    /// may make a project with a status of any name).
    #[serde(default)]
    #[schemars(inner(regex(pattern = "^[A-Z][A-Z0-9_]{1,9}$")), extend("uniqueItems" = true))]
    pub projects: Vec<String>,
}

fn default_change_trailer() -> String {
    "Change-Request".to_owned()
}

/// The fields of a Jira issue that hold the planned start and end of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangeWindowFields {
    /// Field id of the planned start, like `customfield_10050` (a date-time or date field).
    #[schemars(regex(pattern = "^[A-Za-z][A-Za-z0-9_]{0,63}$"))]
    pub start: String,
    /// Field id of the planned end.
    #[schemars(regex(pattern = "^[A-Za-z][A-Za-z0-9_]{0,63}$"))]
    pub end: String,
}

fn default_renewal_rule() -> RenewalRule {
    RenewalRule::Anytime
}

fn default_expiry_margin() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_review_within() -> Duration {
    Duration::from_secs(72 * 3_600)
}

/// Most findings allowed per enforcement level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ViolationLimits {
    /// Most `deny` findings (default 0).
    #[serde(default)]
    pub deny: u32,
    /// Most `warn` findings; unlimited when unset.
    pub warn: Option<u32>,
    /// Most `audit` findings; unlimited when unset.
    pub audit: Option<u32>,
}

fn default_max_level() -> SarifLevel {
    SarifLevel::Warning
}

/// SARIF reports that must be clean enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScanRequirement {
    /// Glob patterns of SARIF files in the repository, like `reports/**/*.sarif`.
    #[schemars(length(min = 1))]
    pub paths: Vec<String>,
    /// Any result above this level fails the gate.
    #[serde(default = "default_max_level")]
    pub max_level: SarifLevel,
    /// Any result whose `security-severity` is in this band or above fails the gate.
    pub max_severity: Option<SecurityBand>,
    /// Count only results not in the base's reports (by fingerprint).
    #[serde(default)]
    pub new_only: bool,
}

/// Approvals a change needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalRequirement {
    /// How many distinct approvers.
    #[schemars(range(min = 1))]
    pub count: u32,
    /// Who may approve: principals of the host's allowed signers (usually e-mail addresses);
    /// any listed principal when empty.
    #[serde(default)]
    #[schemars(
        inner(regex(pattern = patterns::PRINCIPAL)),
        extend("uniqueItems" = true)
    )]
    pub from: Vec<String>,
    /// Where approvals are read: `signatures` (made by `gitward approve`, checked against the
    /// host's allowed signers), `trailers` (`Approved-by:` lines of the applied commit,
    /// unverified; only where the host trusts them), or `github` / `gitlab`: approving
    /// reviews of the merged pull request, read from the host's forge (`from` lists logins
    /// then).
    #[serde(default = "default_approval_source")]
    pub source: ApprovalSource,
}

fn default_approval_source() -> ApprovalSource {
    ApprovalSource::Signatures
}

/// Times when changes may be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangeWindow {
    /// IANA time zone the times are in, like `Europe/Berlin`.
    pub timezone: String,
    /// Weekly slots when changes may be applied; any time when empty.
    #[serde(default)]
    pub allow: Vec<AllowSlot>,
    /// Date ranges when no change may be applied (freezes), whatever `allow` says.
    #[serde(default)]
    pub deny: Vec<Freeze>,
}

/// A weekly time slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllowSlot {
    /// Days of the week; every day when empty.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true))]
    pub days: Vec<Weekday>,
    /// Start time, `HH:MM`.
    #[schemars(regex(pattern = patterns::TIME_OF_DAY))]
    pub from: String,
    /// End time, `HH:MM`; earlier than `from` for a slot that goes past midnight.
    #[schemars(regex(pattern = patterns::TIME_OF_DAY))]
    pub to: String,
}

/// A date range, inclusive, when changes are frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Freeze {
    /// First day, `YYYY-MM-DD`.
    #[schemars(regex(pattern = patterns::DATE))]
    pub from: String,
    /// Last day, `YYYY-MM-DD`.
    #[schemars(regex(pattern = patterns::DATE))]
    pub to: String,
    /// Why, shown when a change waits.
    pub reason: Option<String>,
}

fn default_override_trailer() -> String {
    "Gate-Override".to_owned()
}

/// Override of a gate by a commit trailer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GateOverride {
    /// Trailer that overrides: `<trailer>: <gate name> <reason>`.
    #[serde(default = "default_override_trailer")]
    #[schemars(regex(pattern = patterns::TRAILER))]
    pub trailer: String,
    /// Principals allowed to override; the overriding commit must be SSH-signed by one.
    #[schemars(length(min = 1), inner(regex(pattern = patterns::PRINCIPAL)))]
    pub by: Vec<String>,
    /// Sinks told about every override.
    #[serde(default)]
    pub notify: Vec<Name>,
    /// How soon another principal reviews an override (`Override-Reviewed: <sha>` on a later
    /// signed commit) before the open review is reported overdue.
    #[serde(default = "default_review_within")]
    pub review_within: Duration,
}

string_enum!(
    /// The kind of receiver a sink delivers to.
    SinkType {
        SplunkHec = "splunk-hec",
        Sentinel = "sentinel",
        Syslog = "syslog",
        Webhook = "webhook",
        Jira = "jira",
        ServiceNow = "servicenow",
        PagerDuty = "pagerduty",
        File = "file",
    }
);

string_enum!(
    /// Event types a sink can subscribe to.
    EventType {
        CertificateIssued = "certificate.issued",
        CertificateRenewed = "certificate.renewed",
        CertificateReissued = "certificate.reissued",
        CertificateRemoved = "certificate.removed",
        CertificateFailed = "certificate.failed",
        CertificateExpiring = "certificate.expiring",
        PolicyViolation = "policy.violation",
        PolicyResolved = "policy.resolved",
        ExceptionExpiring = "exception.expiring",
        GateBlocked = "gate.blocked",
        GatePending = "gate.pending",
        GateOverride = "gate.override",
        GateOverrideOverdue = "gate.override.overdue",
        GateOverrideReviewed = "gate.override.reviewed",
        GateUnblocked = "gate.unblocked",
        ReconcileFailed = "reconcile.failed",
        ReconcileBlocked = "reconcile.blocked",
        TicketSlaBreached = "ticket.sla_breached",
        SinkTest = "sink.test",
    }
);

string_enum!(
    /// Syslog message format.
    SyslogFormat {
        Rfc5424 = "rfc5424",
        Cef = "cef",
        Leef = "leef",
    }
);

fn all_events() -> Vec<EventType> {
    EventType::ALL.to_vec()
}

fn default_min_severity() -> FindingSeverity {
    FindingSeverity::Low
}

/// A receiver of events (SIEM, syslog, webhook) or tickets (Jira, ServiceNow, PagerDuty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("allOf" = [
    {"if": {"properties": {"type": {"const": "jira"}}}, "then": {"required": ["jira"], "errorMessage": "a jira sink needs a `jira` block with at least `project`"}},
    {"if": {"properties": {"type": {"const": "servicenow"}}}, "then": {"required": ["servicenow"], "errorMessage": "a servicenow sink needs a `servicenow` block (`{}` takes the defaults)"}},
    {"if": {"properties": {"type": {"const": "sentinel"}}}, "then": {"required": ["sentinel"], "errorMessage": "a sentinel sink needs a `sentinel` block with `dcrImmutableId` and `stream`"}},
    {"if": {"required": ["splunk"]}, "then": {"properties": {"type": {"const": "splunk-hec", "errorField": "splunk", "errorMessage": "the `splunk` block belongs to sinks of type splunk-hec"}}}},
    {"if": {"required": ["sentinel"]}, "then": {"properties": {"type": {"const": "sentinel", "errorField": "sentinel", "errorMessage": "the `sentinel` block belongs to sinks of type sentinel"}}}},
    {"if": {"required": ["syslog"]}, "then": {"properties": {"type": {"const": "syslog", "errorField": "syslog", "errorMessage": "the `syslog` block belongs to sinks of type syslog"}}}},
    {"if": {"required": ["jira"]}, "then": {"properties": {"type": {"const": "jira", "errorField": "jira", "errorMessage": "the `jira` block belongs to sinks of type jira"}}}},
    {"if": {"required": ["servicenow"]}, "then": {"properties": {"type": {"const": "servicenow", "errorField": "servicenow", "errorMessage": "the `servicenow` block belongs to sinks of type servicenow"}}}},
]))]
pub struct SinkSpec {
    /// Receiver type.
    #[serde(rename = "type")]
    pub type_: SinkType,
    /// Name of an endpoint in the host config, which pairs the URL with its credential.
    pub endpoint: Name,
    /// Event types delivered; all when unset.
    #[serde(default = "all_events")]
    #[schemars(length(min = 1), extend("uniqueItems" = true))]
    pub events: Vec<EventType>,
    /// Least severity delivered.
    #[serde(default = "default_min_severity")]
    pub min_severity: FindingSeverity,
    /// Splunk HTTP Event Collector settings.
    pub splunk: Option<SplunkSettings>,
    /// Microsoft Sentinel (Azure Monitor Logs Ingestion) settings.
    pub sentinel: Option<SentinelSettings>,
    /// Syslog settings.
    pub syslog: Option<SyslogSettings>,
    /// Jira settings (boxed: few sinks have them, and every resource is the size of the
    /// largest spec).
    pub jira: Option<Box<JiraSettings>>,
    /// ServiceNow settings.
    pub servicenow: Option<Box<ServiceNowSettings>>,
}

/// Splunk HEC envelope fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SplunkSettings {
    /// Index to write to; the token's default index when unset.
    #[schemars(length(min = 1, max = 80), regex(pattern = "^[a-z0-9_][a-z0-9_-]*$"))]
    pub index: Option<String>,
    /// Sourcetype of events (default `gitward:event`).
    #[schemars(length(min = 1, max = 256))]
    pub sourcetype: Option<String>,
    /// Indexer acknowledgement: an event counts as delivered only once Splunk says it is
    /// indexed, and is sent again when that does not come in time. The HEC token must have
    /// acknowledgement enabled.
    #[serde(default)]
    pub ack: bool,
}

/// Azure Monitor Logs Ingestion target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SentinelSettings {
    /// Immutable ID of the data collection rule, like `dcr-000a00a000a00000a000000aa000a0aa`.
    #[schemars(regex(pattern = "^dcr-[0-9a-f]{32}$"))]
    pub dcr_immutable_id: String,
    /// Stream declared in the rule, like `Custom-GitwardEvents`.
    #[schemars(regex(pattern = "^(Custom|Microsoft)-[A-Za-z0-9_]+$"))]
    pub stream: String,
}

fn default_syslog_format() -> SyslogFormat {
    SyslogFormat::Rfc5424
}

/// Syslog output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyslogSettings {
    /// Message format: RFC 5424 structured data, ArcSight CEF or QRadar LEEF.
    #[serde(default = "default_syslog_format")]
    pub format: SyslogFormat,
    /// Syslog facility, 0–23 (default 10, security/authorization).
    #[serde(default = "default_syslog_facility")]
    #[schemars(range(min = 0, max = 23))]
    pub facility: u8,
    /// IANA private enterprise number of the RFC 5424 structured data id (`gitward@<n>`);
    /// the default 32473 is the number reserved for documentation.
    #[serde(default = "default_enterprise_id")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub enterprise_id: u32,
    /// LEEF 2.0 attribute delimiter: one punctuation character other than `|` and `=`, or a
    /// hex code like `x09` (tab).
    #[serde(default = "default_leef_delimiter")]
    #[schemars(regex(pattern = "^([!-/:-<>-@\\[-`{}~]|0?[xX][0-9a-fA-F]{1,4})$"))]
    pub delimiter: String,
    /// Longest datagram over UDP, in bytes; a longer message is cut and ends in `...`.
    #[serde(default = "default_udp_max_bytes")]
    #[schemars(range(min = 480, max = 65000))]
    pub max_message_bytes: u32,
}

fn default_syslog_facility() -> u8 {
    10
}

fn default_enterprise_id() -> u32 {
    32473
}

fn default_leef_delimiter() -> String {
    "^".to_owned()
}

fn default_udp_max_bytes() -> u32 {
    2048
}

impl Default for SyslogSettings {
    fn default() -> SyslogSettings {
        SyslogSettings {
            format: default_syslog_format(),
            facility: default_syslog_facility(),
            enterprise_id: default_enterprise_id(),
            delimiter: default_leef_delimiter(),
            max_message_bytes: default_udp_max_bytes(),
        }
    }
}

/// A value for each severity; severities left out take the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BySeverity<T> {
    pub critical: Option<T>,
    pub high: Option<T>,
    pub medium: Option<T>,
    pub low: Option<T>,
    pub info: Option<T>,
}

impl<T: Clone> BySeverity<T> {
    /// The value for `severity`, or `default`'s.
    pub fn get(&self, severity: FindingSeverity, default: &BySeverity<T>) -> Option<T> {
        let pick = |map: &BySeverity<T>| match severity {
            FindingSeverity::Critical => map.critical.clone(),
            FindingSeverity::High => map.high.clone(),
            FindingSeverity::Medium => map.medium.clone(),
            FindingSeverity::Low => map.low.clone(),
            FindingSeverity::Info => map.info.clone(),
        };
        pick(self).or_else(|| pick(default))
    }
}

string_enum!(
    /// What a ticket sink does when a problem comes back after its ticket was resolved:
    /// reopen it, with a comment naming the commit, or open a new one.
    OnReturn {
        Reopen = "reopen",
        New = "new",
    }
);

fn default_on_return() -> OnReturn {
    OnReturn::Reopen
}

string_enum!(
    /// Which Jira a sink files issues in: Cloud (REST API v3, descriptions in Atlassian
    /// Document Format) or Data Center / Server (REST API v2, wiki text).
    JiraApi {
        Cloud = "cloud",
        DataCenter = "dataCenter",
    }
);

fn default_jira_api() -> JiraApi {
    JiraApi::Cloud
}

/// Jira issue fields and workflow for tickets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JiraSettings {
    /// Project key, like `SEC`.
    #[schemars(regex(pattern = "^[A-Z][A-Z0-9_]{1,9}$"))]
    pub project: String,
    /// Issue type name (default `Bug`).
    pub issue_type: Option<String>,
    /// Labels added to every ticket (no spaces), besides `gitward` and the problem's own.
    #[serde(default)]
    #[schemars(inner(regex(pattern = "^[^\\s]{1,255}$")))]
    pub labels: Vec<String>,
    /// Priority name by severity (default Highest, High, Medium, Low, Lowest), sent when the
    /// project's create screen has a priority.
    #[serde(default)]
    pub priority: BySeverity<String>,
    /// Priority names by the resource's `env` label, before `priority`: `{prod: {high:
    /// Highest}}`.
    #[serde(default)]
    pub priority_by_env: std::collections::BTreeMap<String, BySeverity<String>>,
    /// Days from opening to the due date, by severity (default 7, 30, 90, 120 for critical,
    /// high, medium, low; none for info).
    #[serde(default)]
    pub sla: BySeverity<u32>,
    /// Further fields of new issues, like `{customfield_10010: "{{resource.name}}"}`: strings
    /// may name parts of the event in `{{...}}`.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// When a problem comes back after its ticket was resolved: `reopen` (default) or `new`.
    #[serde(default = "default_on_return")]
    pub on_return: OnReturn,
    /// Names of the workflow transitions that resolve and reopen an issue; by default the
    /// first of the issue's transitions into a done status, and out of one.
    pub transitions: Option<JiraTransitions>,
    /// Resolutions a person sets to say "won't fix": such an issue is never reopened
    /// (default `Won't Fix`, `Won't Do`, `Declined`).
    #[serde(default)]
    pub accepted_resolutions: Vec<String>,
    /// `cloud` (REST API v3, default) or `dataCenter` (REST API v2).
    #[serde(default = "default_jira_api")]
    pub api: JiraApi,
}

/// Jira workflow transitions, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JiraTransitions {
    pub resolve: Option<String>,
    pub reopen: Option<String>,
}

/// ServiceNow record settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceNowSettings {
    /// Table records go to (default `incident`).
    #[schemars(regex(pattern = "^[a-z0-9_]{1,80}$"))]
    pub table: Option<String>,
    /// Assignment group of new records (its sys_id or name).
    pub assignment_group: Option<String>,
    /// Caller of new records (a user's sys_id or user name).
    pub caller: Option<String>,
    /// `impact` by severity (default 1 for critical and high, 2 medium, 3 low and info).
    #[serde(default)]
    pub impact: BySeverity<String>,
    /// `urgency` by severity (default 1 critical, 2 high and medium, 3 low and info).
    #[serde(default)]
    pub urgency: BySeverity<String>,
    /// Days from opening to the due date, by severity (default 7, 30, 90, 120).
    #[serde(default)]
    pub sla: BySeverity<u32>,
    /// Close code of records resolved when their problem clears; it must be one of the
    /// instance's choices for `close_code` (by default the first of them).
    pub close_code: Option<String>,
    /// Close codes a person sets to say "won't fix": such a record is never reopened
    /// (default `Not Solved (Too Costly)`, `Not Solved (Not Reproducible)`; a canceled
    /// record counts too).
    #[serde(default)]
    pub accepted_close_codes: Vec<String>,
    /// Further fields of new records, like `{u_source: "{{source}}"}`: strings may name parts
    /// of the event in `{{...}}`.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// When a problem comes back after its record was resolved: `reopen` (default) or `new`.
    #[serde(default = "default_on_return")]
    pub on_return: OnReturn,
}

/// A resource's spec, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    // Boxed: the largest spec, and there are few issuers; every resource is the size of its
    // largest variant.
    Issuer(Box<IssuerSpec>),
    Certificate(CertificateSpec),
    Policy(PolicySpec),
    Gate(GateSpec),
    Sink(SinkSpec),
}

/// A typed, schema-valid resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub metadata: Metadata,
    pub spec: Spec,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self.spec {
            Spec::Issuer(_) => Kind::Issuer,
            Spec::Certificate(_) => Kind::Certificate,
            Spec::Policy(_) => Kind::Policy,
            Spec::Gate(_) => Kind::Gate,
            Spec::Sink(_) => Kind::Sink,
        }
    }

    pub fn name(&self) -> &Name {
        &self.metadata.name
    }
}
