//! Keys and certificates: generating keys of every supported algorithm, issuing root CAs,
//! intermediates and leaf certificates with rcgen (aws-lc-rs backend, which also makes RSA
//! keys), and reading back what a certificate says.

use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, RsaKeySize, SanType,
    SerialNumber,
};
use sha2::{Digest, Sha256};

use crate::model::{
    CaIssuer, CertificateSpec, Duration, KeyAlgorithm, SelfSignedIssuer, Subject, Usage,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a {algorithm} key: {source}")]
    KeyGeneration {
        algorithm: KeyAlgorithm,
        #[source]
        source: rcgen::Error,
    },
    #[error("reading a stored key: {0}")]
    KeyParse(#[source] rcgen::Error),
    #[error("signing the certificate: {0}")]
    Signing(#[source] rcgen::Error),
    #[error("{0} is not a valid DNS name for a certificate")]
    DnsName(String),
    #[error("reading the issuer's certificate: {0}")]
    IssuerCertificate(#[source] rcgen::Error),
    #[error("reading a certificate: {0}")]
    Parse(String),
    #[error("no source of randomness: {0}")]
    Random(String),
    #[error("{0}")]
    Acme(String),
    #[error("validity past the year 9999")]
    Validity,
}

/// A freshly generated private key.
pub fn generate_key(algorithm: KeyAlgorithm) -> Result<KeyPair, PkiError> {
    let generated = match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyAlgorithm::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
        }
        KeyAlgorithm::Rsa3072 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
        }
        KeyAlgorithm::Rsa4096 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
        }
    };
    generated.map_err(|source| PkiError::KeyGeneration { algorithm, source })
}

/// The PKCS#8 v2 encoding aws-lc gives an Ed25519 key (with the public key), up to the seed.
const ED25519_PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The same key as PKCS#8 v1, up to the seed: what OpenSSL 3.0 (and so nginx) reads.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A key as PKCS#8 PEM that the common TLS servers read. Ed25519 keys are written in the
/// version 1 form: OpenSSL 3.0 refuses the version 2 form aws-lc produces.
pub fn key_pem(key: &KeyPair) -> String {
    let der = key.serialize_der();
    if der.len() == 83 && der.starts_with(&ED25519_PKCS8_V2_PREFIX) {
        let mut v1 = ED25519_PKCS8_V1_PREFIX.to_vec();
        v1.extend_from_slice(&der[16..48]);
        return pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", v1),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
    }
    key.serialize_pem()
}

/// A key read back from its PKCS#8 PEM.
pub fn load_key(pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(PkiError::KeyParse)
}

/// Whether a stored key is of the algorithm a spec asks for.
pub fn key_matches(key: &KeyPair, algorithm: KeyAlgorithm) -> bool {
    let wanted = match algorithm {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            // RSA sizes share an algorithm identifier: compare the modulus size.
            let bits = key.public_key_raw().len() * 8;
            let expected = algorithm.key_bits() as usize;
            return key.algorithm() == &rcgen::PKCS_RSA_SHA256 && bits.abs_diff(expected) <= 128;
        }
    };
    key.algorithm() == wanted
}

/// A CA that can sign: its certificate and its key.
pub struct Signer<'k> {
    pub certificate_pem: String,
    issuer: Issuer<'static, &'k KeyPair>,
}

impl<'k> Signer<'k> {
    pub fn new(certificate_pem: &str, key: &'k KeyPair) -> Result<Signer<'k>, PkiError> {
        let issuer =
            Issuer::from_ca_cert_pem(certificate_pem, key).map_err(PkiError::IssuerCertificate)?;
        Ok(Signer {
            certificate_pem: certificate_pem.to_owned(),
            issuer,
        })
    }
}

/// 128 random bits, as a positive DER integer.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| PkiError::Random(e.to_string()))?;
    // Clear the sign bit so the integer stays positive in 16 octets; keep it nonzero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn to_offset(time: DateTime<Utc>) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(time.timestamp()).map_err(|_| PkiError::Validity)
}

fn validity(
    params: &mut CertificateParams,
    now: DateTime<Utc>,
    duration: Duration,
) -> Result<(), PkiError> {
    let seconds = i64::try_from(duration.as_secs()).map_err(|_| PkiError::Validity)?;
    let not_after = now
        .checked_add_signed(chrono::Duration::seconds(seconds))
        .ok_or(PkiError::Validity)?;
    params.not_before = to_offset(now)?;
    params.not_after = to_offset(not_after)?;
    Ok(())
}

fn distinguished_name(common_name: Option<&str>, subject: Option<&Subject>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(subject) = subject {
        if let Some(country) = &subject.country {
            dn.push(DnType::CountryName, country.as_str());
        }
        if let Some(province) = &subject.province {
            dn.push(DnType::StateOrProvinceName, province.as_str());
        }
        if let Some(locality) = &subject.locality {
            dn.push(DnType::LocalityName, locality.as_str());
        }
        if let Some(organization) = &subject.organization {
            dn.push(DnType::OrganizationName, organization.as_str());
        }
        if let Some(unit) = &subject.organizational_unit {
            dn.push(DnType::OrganizationalUnitName, unit.as_str());
        }
    }
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    dn
}

fn ca_params(
    common_name: &str,
    subject: Option<&Subject>,
    path_len: Option<u8>,
    now: DateTime<Utc>,
    duration: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(Some(common_name), subject);
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    validity(&mut params, now, duration)?;
    Ok(params)
}

/// A self-signed root CA certificate, as PEM.
pub fn issue_root(
    spec: &SelfSignedIssuer,
    key: &KeyPair,
    now: DateTime<Utc>,
) -> Result<String, PkiError> {
    let params = ca_params(
        &spec.common_name,
        spec.subject.as_ref(),
        None,
        now,
        spec.duration,
    )?;
    Ok(params.self_signed(key).map_err(PkiError::Signing)?.pem())
}

/// An intermediate CA certificate signed by `parent`, as PEM.
pub fn issue_intermediate(
    spec: &CaIssuer,
    key: &KeyPair,
    parent: &Signer<'_>,
    now: DateTime<Utc>,
) -> Result<String, PkiError> {
    let mut params = ca_params(
        &spec.common_name,
        spec.subject.as_ref(),
        spec.path_len,
        now,
        spec.duration,
    )?;
    params.use_authority_key_identifier_extension = true;
    if !spec.permitted_dns_domains.is_empty() {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: spec
                .permitted_dns_domains
                .iter()
                .map(|d| GeneralSubtree::DnsName(d.to_string()))
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    Ok(params
        .signed_by(key, &parent.issuer)
        .map_err(PkiError::Signing)?
        .pem())
}

fn extended_key_usage(usage: Usage) -> ExtendedKeyUsagePurpose {
    match usage {
        Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        Usage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
        Usage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        Usage::TimeStamping => ExtendedKeyUsagePurpose::TimeStamping,
        Usage::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
    }
}

/// A leaf certificate for `spec`, with `key`'s public key, signed by `parent`, as PEM.
/// The subject and names of a leaf, as both a certificate and a signing request carry them.
fn leaf_params(spec: &CertificateSpec) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name =
        distinguished_name(spec.effective_common_name(), spec.subject.as_ref());
    for name in &spec.dns_names {
        let dns = name
            .as_str()
            .try_into()
            .map_err(|_| PkiError::DnsName(name.to_string()))?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    for address in &spec.ip_addresses {
        // The loader checked every address; one that fails here is left out rather than
        // guessed at.
        if let Ok(ip) = IpAddr::from_str(&address.0) {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
    }
    Ok(params)
}

pub fn issue_leaf(
    spec: &CertificateSpec,
    key: &KeyPair,
    parent: &Signer<'_>,
    now: DateTime<Utc>,
) -> Result<String, PkiError> {
    let mut params = leaf_params(spec)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if spec.key_algorithm.key_type() == "RSA" {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = spec
        .usages
        .iter()
        .copied()
        .map(extended_key_usage)
        .collect();
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    validity(&mut params, now, spec.duration)?;
    Ok(params
        .signed_by(key, &parent.issuer)
        .map_err(PkiError::Signing)?
        .pem())
}

/// A certificate signing request (DER) for `spec`'s names, signed with `key`: what an ACME
/// server is asked to certify. The CA decides validity and usages.
pub fn signing_request(spec: &CertificateSpec, key: &KeyPair) -> Result<Vec<u8>, PkiError> {
    let request = leaf_params(spec)?
        .serialize_request(key)
        .map_err(PkiError::Signing)?;
    Ok(request.der().to_vec())
}

/// Splits a PEM bundle into its first certificate and the rest (the chain), both as PEM.
pub fn split_chain(bundle: &str) -> (String, String) {
    let end = "-----END CERTIFICATE-----";
    match bundle.find(end) {
        Some(at) => {
            let (leaf, rest) = bundle.split_at(at + end.len());
            (
                format!("{}\n", leaf.trim_start()),
                rest.trim_start().to_owned(),
            )
        }
        None => (bundle.to_owned(), String::new()),
    }
}

/// What a certificate says, as status records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Serial number, colon-separated hex (as `openssl x509 -serial` prints it, with colons).
    pub serial: String,
    /// SHA-256 of the DER, colon-separated upper-case hex (as `openssl x509 -fingerprint -sha256`).
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

fn colon_hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads serial, fingerprint and validity from a PEM certificate.
pub fn inspect(pem: &str) -> Result<CertificateInfo, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    let certificate = pem
        .parse_x509()
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).ok_or(PkiError::Validity)
    };
    Ok(CertificateInfo {
        serial: colon_hex(certificate.raw_serial(), false),
        fingerprint: colon_hex(&Sha256::digest(&pem.contents), true),
        not_before: time(certificate.validity().not_before)?,
        not_after: time(certificate.validity().not_after)?,
    })
}

#[cfg(test)]
mod tests {
    use x509_parser::extensions::{GeneralName, ParsedExtension};

    use super::*;
    use crate::model::{DnsDomain, DnsName, IpAddress, Name};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn root() -> (KeyPair, String) {
        let key = generate_key(KeyAlgorithm::EcdsaP384).unwrap();
        let spec = SelfSignedIssuer {
            common_name: "Test Root".into(),
            subject: None,
            key_algorithm: KeyAlgorithm::EcdsaP384,
            duration: Duration::from_secs(3650 * 86_400),
        };
        let pem = issue_root(&spec, &key, now()).unwrap();
        (key, pem)
    }

    fn leaf_spec(algorithm: KeyAlgorithm) -> CertificateSpec {
        CertificateSpec {
            issuer_ref: Name("ca".into()),
            common_name: None,
            subject: None,
            dns_names: vec![
                DnsName("api.example.com".into()),
                DnsName("*.api.example.com".into()),
            ],
            ip_addresses: vec![IpAddress("10.0.0.5".into())],
            key_algorithm: algorithm,
            duration: Duration::from_secs(90 * 86_400),
            renew_before: None,
            usages: vec![Usage::ServerAuth, Usage::ClientAuth],
            rotate_private_key: true,
            target: Name("web".into()),
        }
    }

    #[test]
    fn every_key_algorithm_is_generated_and_recognised() {
        for &algorithm in KeyAlgorithm::ALL {
            let key = generate_key(algorithm).unwrap();
            assert!(key_matches(&key, algorithm), "{algorithm}");
            let reloaded = load_key(&key_pem(&key)).unwrap();
            assert!(
                key_matches(&reloaded, algorithm),
                "{algorithm} after a round trip"
            );
        }
        let p256 = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(!key_matches(&p256, KeyAlgorithm::EcdsaP384));
        let rsa = generate_key(KeyAlgorithm::Rsa2048).unwrap();
        assert!(!key_matches(&rsa, KeyAlgorithm::Rsa3072));
    }

    #[test]
    fn a_chain_carries_constraints_names_usages_and_exact_validity() {
        let (root_key, root_pem) = root();
        let root_signer = Signer::new(&root_pem, &root_key).unwrap();
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = CaIssuer {
            issuer_ref: Name("root".into()),
            common_name: "Test Issuing".into(),
            subject: None,
            key_algorithm: KeyAlgorithm::EcdsaP256,
            duration: Duration::from_secs(365 * 86_400),
            path_len: Some(0),
            permitted_dns_domains: vec![DnsDomain("example.com".into())],
        };
        let ca_pem = issue_intermediate(&ca, &ca_key, &root_signer, now()).unwrap();
        let ca_signer = Signer::new(&ca_pem, &ca_key).unwrap();
        let leaf_key = generate_key(KeyAlgorithm::Rsa2048).unwrap();
        let leaf_pem = issue_leaf(
            &leaf_spec(KeyAlgorithm::Rsa2048),
            &leaf_key,
            &ca_signer,
            now(),
        )
        .unwrap();

        let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
        let ca_cert = pem.parse_x509().unwrap();
        let constraints = ca_cert.basic_constraints().unwrap().unwrap().value;
        assert!(constraints.ca);
        assert_eq!(constraints.path_len_constraint, Some(0));
        assert!(ca_cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        let names = ca_cert.name_constraints().unwrap().unwrap().value;
        assert_eq!(
            names.permitted_subtrees.as_ref().unwrap()[0].base,
            GeneralName::DNSName("example.com")
        );

        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes()).unwrap();
        let leaf = pem.parse_x509().unwrap();
        assert_eq!(leaf.issuer(), ca_cert.subject());
        let sans: Vec<String> = leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            sans,
            [
                "DNSName(api.example.com)",
                "DNSName(*.api.example.com)",
                "IPAddress(0a:00:00:05)"
            ]
        );
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
        assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
        let has_aki = leaf.extensions().iter().any(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::AuthorityKeyIdentifier(_)
            )
        });
        assert!(has_aki);
        let info = inspect(&leaf_pem).unwrap();
        assert_eq!(info.not_after - info.not_before, chrono::Duration::days(90));
        assert_eq!(info.not_before, now());
        assert_eq!(info.serial.len(), 16 * 3 - 1);
        assert_eq!(info.fingerprint.len(), 32 * 3 - 1);
    }

    #[test]
    fn serials_are_random_even_for_the_same_key() {
        let (root_key, root_pem) = root();
        let signer = Signer::new(&root_pem, &root_key).unwrap();
        let key = generate_key(KeyAlgorithm::Ed25519).unwrap();
        let spec = leaf_spec(KeyAlgorithm::Ed25519);
        let a = inspect(&issue_leaf(&spec, &key, &signer, now()).unwrap()).unwrap();
        let b = inspect(&issue_leaf(&spec, &key, &signer, now()).unwrap()).unwrap();
        assert_ne!(a.serial, b.serial);
    }
}
