//! A throwaway certificate authority and serving certificates, for the tests, the benchmark
//! and the local run, where there is no cert-manager to issue them.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
#[error("generating a certificate: {0}")]
pub struct CertError(#[from] rcgen::Error);

/// A CA that can issue serving certificates.
pub struct Authority {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A serving certificate with its key, in PEM.
pub struct Serving {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Authority {
    pub fn new(common_name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Authority {
            cert_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A serving certificate for the given DNS names and IP addresses.
    pub fn issue(&self, names: &[&str]) -> Result<Serving, CertError> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("hubguard"),
        );
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert_pem = params.signed_by(&key, &self.issuer)?.pem();
        Ok(Serving {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }
}
