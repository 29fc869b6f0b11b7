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

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-12-03 14:00:00 UTC`, from seconds since the epoch.
pub(crate) fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A certificate's validity (notBefore, notAfter) in seconds since the epoch, read from its DER:
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... } (RFC 5280 §4.1).
pub(crate) fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (cert, _) = element(der, 0x30)?;
    let (mut tbs, _) = element(cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs, 0xa0)?.1;
    }
    let rest = element(tbs, 0x02)?.1; // serialNumber
    let rest = element(rest, 0x30)?.1; // signature
    let rest = element(rest, 0x30)?.1; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let (tag, not_before, rest) = any(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = any(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// The content of the DER element at the start of `der` if its tag is `tag`, and what follows.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = any(der)?;
    (t == tag).then_some((content, rest))
}

fn any(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(n)?;
        rest = after;
        bytes.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b))
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ).
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    // Days from the civil date (Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + min * 60 + sec)
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

    #[test]
    fn dates_go_both_ways() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_256_000), "2026-12-03 00:00:00 UTC");
        assert_eq!(time(0x17, b"261203000000Z"), Some(1_796_256_000));
        assert_eq!(time(0x18, b"20261203000000Z"), Some(1_796_256_000));
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"2026120300000"), None, "no Z");
    }
}
