//! Optional access control (off unless configured): a client address allowlist, a bearer token
//! compared in constant time, and a TLS listener whose client certificates may be required.
//!
//! Everything here is read from files when a configuration is put in force, at start-up and on
//! every reload, so a rotated token, certificate or CA takes effect without a restart, and a
//! broken one is refused with its reason while the old one keeps serving (see `reload`).
//! `/-/healthy` and `/-/ready` stay open: the kubelet probes them without credentials.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::HeaderMap;
use meshscrape_common::x509::{now_secs, utc, validity};
use meshscrape_common::{Cidr, ProxyConfig, Tls};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The largest token file read: tokens are a few hundred bytes; a larger file is a mistake.
const MAX_TOKEN_BYTES: u64 = 16 << 10;

/// The client's address, put in each request's extensions by the listener.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Why a request or connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Its address is in none of `auth.allowedClients`.
    ClientAddress,
    /// No `Authorization: Bearer` header.
    NoToken,
    /// A bearer token that is not the one in `auth.bearerTokenFile`.
    BadToken,
    /// The TLS handshake failed (no, expired or untrusted client certificate, or not TLS at all).
    TlsHandshake,
}

impl Denied {
    pub const ALL: [Denied; 4] =
        [Self::ClientAddress, Self::NoToken, Self::BadToken, Self::TlsHandshake];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientAddress => "client_address",
            Self::NoToken => "no_token",
            Self::BadToken => "bad_token",
            Self::TlsHandshake => "tls_handshake",
        }
    }
}

/// What one configuration lets in.
#[derive(Default)]
pub(crate) struct Access {
    token: Option<Vec<u8>>,
    allowed: Vec<Cidr>,
    pub(crate) tls: Option<Arc<ServerConfig>>,
    /// When the server certificate expires, in seconds since the epoch.
    pub(crate) cert_not_after: Option<i64>,
}

impl Access {
    /// Reads the files `config` names and checks them; the error names the key, the file and
    /// what is wrong with it.
    pub(crate) fn load(config: &ProxyConfig) -> Result<Access, String> {
        let token = match &config.auth.bearer_token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        let (tls, cert_not_after) = match &config.tls {
            Some(tls) => {
                let (server, not_after) = server_config(tls)?;
                (Some(server), Some(not_after))
            }
            None => (None, None),
        };
        Ok(Access { token, allowed: config.auth.allowed_clients.clone(), tls, cert_not_after })
    }

    /// Lets a request to a route or `/-/metrics` through, or says why not.
    pub(crate) fn check(
        &self,
        client: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<(), Denied> {
        if !self.allowed.is_empty() {
            let allowed = client.is_some_and(|c| self.allowed.iter().any(|b| b.contains(c.ip())));
            if !allowed {
                return Err(Denied::ClientAddress);
            }
        }
        if let Some(token) = &self.token {
            let given = headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().split_at_checked(7))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
                .map(|(_, t)| t.trim_ascii());
            match given {
                None => return Err(Denied::NoToken),
                Some(t) if !same(t, token) => return Err(Denied::BadToken),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Whether the token is asked for, for the 401's `WWW-Authenticate`.
    pub(crate) fn wants_token(&self) -> bool {
        self.token.is_some()
    }
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn read_token(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("auth.bearerTokenFile {shown}: cannot read it: {e}"))?;
    if meta.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "auth.bearerTokenFile {shown}: {} bytes is too large for a token (at most {MAX_TOKEN_BYTES})",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| format!("auth.bearerTokenFile {shown}: cannot read it: {e}"))?;
    // A Secret written with `echo` ends with a newline that is not part of the token.
    let token = bytes.trim_ascii().to_vec();
    if token.is_empty() {
        return Err(format!("auth.bearerTokenFile {shown} is empty; it must hold the token"));
    }
    if token.iter().any(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "auth.bearerTokenFile {shown} holds spaces or control characters; a bearer token is \
                one word of printable ASCII"
        ));
    }
    Ok(token)
}

fn server_config(tls: &Tls) -> Result<(Arc<ServerConfig>, i64), String> {
    let cert_shown = tls.cert_file.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(|e| format!("tls.certFile {cert_shown}: cannot read it: {}", pem_error(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.certFile {cert_shown}: {}", pem_error(&e)))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("tls.certFile {cert_shown} holds no PEM certificate"));
    };
    let (not_before, not_after) = validity(leaf).ok_or_else(|| {
        format!("tls.certFile {cert_shown}: the first certificate is not a valid X.509 certificate")
    })?;
    let now = now_secs();
    if now < not_before {
        return Err(format!(
            "tls.certFile {cert_shown}: the certificate is not valid before {}",
            utc(not_before)
        ));
    }
    if now > not_after {
        return Err(format!(
            "tls.certFile {cert_shown}: the certificate expired on {}",
            utc(not_after)
        ));
    }
    let key_shown = tls.key_file.display();
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| format!("tls.keyFile {key_shown}: {}", pem_error(&e)))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let shown = ca.display();
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| {
                format!("tls.clientCAFile {shown}: cannot read it: {}", pem_error(&e))
            })? {
                let cert =
                    cert.map_err(|e| format!("tls.clientCAFile {shown}: {}", pem_error(&e)))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("tls.clientCAFile {shown}: not a CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("tls.clientCAFile {shown} holds no PEM certificate"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("tls.clientCAFile {shown}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!("tls.keyFile {key_shown} does not go with the certificate in tls.certFile {cert_shown}: {e}")
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), not_after))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "holds no PEM block of the right kind".into()
        }
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not valid PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cres", b"s3cret"));
        assert!(!same(b"s3cret-and-more", b"s3cret"));
        assert!(!same(b"s3c", b"s3cret"));
        assert!(!same(b"", b"s3cret"));
    }
}
