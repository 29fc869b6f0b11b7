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
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("--ca-file {}: {e}", ca_file.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("--ca-file {}: {e}", ca_file.display()))?;
        roots.add(c).map_err(|e| format!("--ca-file {}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca-file {} holds no PEM certificate", ca_file.display()));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = match cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--cert-file {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--key-file {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!("--key-file does not go with --cert-file {}: {e}", cert.display())
            })?
        }
        None => builder.with_no_client_auth(),
    };
    let server_name = server_name
        .map(|n| {
            ServerName::try_from(n.to_string())
                .map_err(|_| format!("--server-name `{n}` is not a DNS name or an IP address"))
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
