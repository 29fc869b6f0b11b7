//! The client side of the sidecar's optional TLS: the CA to trust, the client certificate to
//! present (mutual TLS), the name to expect, as a monitor's `tlsConfig` gives them to Prometheus.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How to make TLS connections to a sidecar.
#[derive(Clone, Debug)]
pub struct Client {
    pub config: Arc<rustls::ClientConfig>,
    /// The name the certificate must carry, when it is not the URL's host (a monitor's
    /// `tlsConfig.serverName`: Prometheus scrapes pod IPs).
    pub server_name: Option<ServerName<'static>>,
}

/// Trusts the CAs in `ca_file`, presents `cert` (certificate and key files) if given, and
/// expects `server_name` if given. The error names the file and what is wrong with it.
pub fn client(
    ca_file: &Path,
    cert: Option<(&Path, &Path)>,
    server_name: Option<&str>,
) -> Result<Client, String> {
    let read = |flag: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let ca = read("--ca-file", ca_file)?;
    let pair = match cert {
        Some((c, k)) => Some((read("--cert-file", c)?, read("--key-file", k)?)),
        None => None,
    };
    let names = Names {
        ca: format!("--ca-file {}", ca_file.display()),
        cert: cert.map_or(String::new(), |(c, _)| format!("--cert-file {}", c.display())),
        key: cert.map_or(String::new(), |(_, k)| format!("--key-file {}", k.display())),
    };
    client_from_pem(&ca, pair.as_ref().map(|(c, k)| (&c[..], &k[..])), server_name, &names)
}

/// What to call each piece in messages: a flag and file, or a Secret's key.
#[derive(Debug, Default)]
pub struct Names {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// [`client`] from PEM already read (from files, or from a monitor's Secrets).
pub fn client_from_pem(
    ca: &[u8],
    cert: Option<(&[u8], &[u8])>,
    server_name: Option<&str>,
    names: &Names,
) -> Result<Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        let c = c.map_err(|e| format!("{}: {e}", names.ca))?;
        roots.add(c).map_err(|e| format!("{}: {e}", names.ca))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", names.ca));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = match cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", names.cert))?;
            let key =
                PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("{}: {e}", names.key))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{} does not go with {}: {e}", names.key, names.cert))?
        }
        None => builder.with_no_client_auth(),
    };
    let server_name = server_name
        .map(|n| {
            ServerName::try_from(n.to_string())
                .map_err(|_| format!("server name `{n}` is not a DNS name or an IP address"))
        })
        .transpose()?;
    Ok(Client { config: Arc::new(config), server_name })
}

/// A TLS configuration that trusts nothing, for the plain-http client (which never uses it: an
/// https URL without a [`Client`] is refused before any connection).
pub(crate) fn plain_only() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
}
