//! The optional access rules, with real certificates made here (rcgen): a bearer token, client
//! address blocks, TLS, mutual TLS with expired and foreign certificates, and certificates and
//! tokens rotated while scrapes run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshscrape_common::{ProxyConfig, ProxyOverrides};
use meshscrape_proxy::App;
use meshscrape_proxy::reload::{Reloaded, Reloader};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::{ConfigMapDir, Reply, Script, Sidecar, Upstream, get, parse_reply};

/// A CA and what it signs, written as PEM files into a folder of the test's own.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM and as rustls takes them.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Leaf {
    fn client_auth(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        use rustls::pki_types::pem::PemObject as _;
        (vec![self.der.clone()], PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap())
    }
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("meshscrape-pki-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{test} CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { dir, ca }
    }

    /// A certificate for localhost and 127.0.0.1 signed by this CA, valid `from` to `until`
    /// years from now (negative for the past).
    fn leaf(&self, from: i64, until: i64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.not_before = years_from_2026(from);
        params.not_after = years_from_2026(until);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 2026-01-01 plus `n` years of 365 days (minus, for negative `n`).
fn years_from_2026(n: i64) -> time::OffsetDateTime {
    let base = rcgen::date_time_ymd(2026, 1, 1);
    let span = Duration::from_secs(365 * 86_400 * n.unsigned_abs());
    if n < 0 { base - span } else { base + span }
}

/// A GET over TLS that trusts `ca` and presents `client` if given; `Err` when the handshake or
/// the exchange fails.
async fn tls_get(
    addr: SocketAddr,
    ca: CertificateDer<'static>,
    client: Option<&Leaf>,
    path: &str,
    headers: &str,
) -> Result<(Reply, CertificateDer<'static>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(leaf) => {
            let (chain, key) = leaf.client_auth();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let served = tls.get_ref().1.peer_certificates().and_then(|c| c.first().cloned());
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n");
    tls.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if buf.is_empty() => return Err(format!("read: {e}")),
        Ok(Err(_)) => {}
        Err(_) => return Err("read: timed out".into()),
    }
    let reply = parse_reply(&buf).ok_or_else(|| "no HTTP answer".to_string())?;
    Ok((reply, served.ok_or("no server certificate")?))
}

fn token_overrides(file: &Path) -> ProxyOverrides {
    ProxyOverrides { bearer_token_file: Some(file.display().to_string()), ..Default::default() }
}

#[tokio::test]
async fn a_bearer_token_guards_routes_and_metrics_but_not_the_probes() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let pki = Pki::new("token");
    let token = pki.write("token", "s3cret-token\n"); // as `echo` writes a Secret
    let sidecar = Sidecar::to_with(up.addr, &["/m=/m"], token_overrides(&token)).await;

    let none = get(sidecar.addr, "/m", "").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate").as_deref(), Some("Bearer realm=\"meshscrape\""));
    assert!(none.text().contains("bearer token is required"), "{}", none.text());
    let wrong = get(sidecar.addr, "/m", "Authorization: Bearer s3cret-tokem\r\n").await;
    assert_eq!(wrong.status, 401);
    let other_scheme = get(sidecar.addr, "/m", "Authorization: Basic czNjcmV0LXRva2Vu\r\n").await;
    assert_eq!(other_scheme.status, 401);
    for path in ["/-/metrics", "/unknown"] {
        assert_eq!(get(sidecar.addr, path, "").await.status, 401, "{path}");
    }
    for path in ["/-/healthy", "/-/ready"] {
        assert_eq!(get(sidecar.addr, path, "").await.status, 200, "{path}: the kubelet's probes");
    }
    let right = get(sidecar.addr, "/m", "Authorization: bearer s3cret-token\r\n").await;
    assert_eq!((right.status, right.text().as_str()), (200, "x 1\n"));
    // The token stops at the sidecar.
    assert!(up.heads().iter().all(|h| !h.to_ascii_lowercase().contains("authorization")));
    assert_eq!(sidecar.metric("meshscrape_proxy_denied_total{reason=\"no_token\"}"), 4.0);
    assert_eq!(sidecar.metric("meshscrape_proxy_denied_total{reason=\"bad_token\"}"), 1.0);
}

#[tokio::test]
async fn a_rotated_token_file_takes_effect_and_a_broken_one_keeps_the_old() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let mut secret = ConfigMapDir::new("token-rotate", "token", "first-token");
    let overrides = ProxyOverrides {
        upstream: Some(format!("http://{}", up.addr)),
        routes: vec!["/m=/m".into()],
        ..token_overrides(&secret.path())
    };
    let sidecar = Sidecar::start(overrides.clone()).await;
    let mut reloader = Reloader::new(sidecar.app(), None, overrides);
    let with = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(get(sidecar.addr, "/m", &with("first-token")).await.status, 200);
    secret.update("   \n");
    match reloader.poll() {
        Some(Reloaded::Refused(why)) => assert!(why.contains("is empty"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(get(sidecar.addr, "/m", &with("first-token")).await.status, 200);
    secret.update("second-token");
    assert!(matches!(reloader.poll(), Some(Reloaded::Applied { .. })));
    assert_eq!(get(sidecar.addr, "/m", &with("second-token")).await.status, 200);
    assert_eq!(get(sidecar.addr, "/m", &with("first-token")).await.status, 401);
}

#[tokio::test]
async fn client_address_blocks_turn_other_clients_away() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let outside = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides { allowed_clients: vec!["10.0.0.0/8".into()], ..Default::default() },
    )
    .await;
    let reply = get(outside.addr, "/m", "").await;
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("client address 127.0.0.1 is not allowed"), "{}", reply.text());
    assert_eq!(get(outside.addr, "/-/ready", "").await.status, 200);
    let inside = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides { allowed_clients: vec!["127.0.0.0/8".into()], ..Default::default() },
    )
    .await;
    assert_eq!(get(inside.addr, "/m", "").await.status, 200);
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_plaintext_gets_nothing() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let pki = Pki::new("tls");
    let server = pki.leaf(-1, 1);
    let overrides = ProxyOverrides {
        tls_cert_file: Some(pki.write("tls.crt", &server.cert_pem).display().to_string()),
        tls_key_file: Some(pki.write("tls.key", &server.key_pem).display().to_string()),
        ..Default::default()
    };
    let sidecar = Sidecar::to_with(up.addr, &["/m=/m"], overrides).await;
    let (reply, served) = tls_get(sidecar.addr, pki.ca_der(), None, "/m", "").await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "x 1\n"));
    assert_eq!(served, server.der);
    // A client that does not speak TLS gets no HTTP answer, and it is counted.
    let mut plain = TcpStream::connect(sidecar.addr).await.unwrap();
    plain.write_all(b"GET /m HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&buf));
    assert_eq!(sidecar.metric("meshscrape_proxy_denied_total{reason=\"tls_handshake\"}"), 1.0);
    let expiry = sidecar.metric("meshscrape_proxy_tls_certificate_expiry_timestamp_seconds");
    assert_eq!(expiry, 1_767_225_600.0 + 365.0 * 86_400.0, "2026-01-01 plus a year");
}

#[tokio::test]
async fn mutual_tls_admits_only_current_certificates_of_the_client_ca() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let pki = Pki::new("mtls");
    let foreign = Pki::new("mtls-foreign");
    let server = pki.leaf(-1, 1);
    let overrides = ProxyOverrides {
        tls_cert_file: Some(pki.write("tls.crt", &server.cert_pem).display().to_string()),
        tls_key_file: Some(pki.write("tls.key", &server.key_pem).display().to_string()),
        tls_client_ca_file: Some(pki.write("ca.crt", &pki.ca_pem()).display().to_string()),
        ..Default::default()
    };
    let sidecar = Sidecar::to_with(up.addr, &["/m=/m"], overrides).await;
    let ca = pki.ca_der();
    let good = pki.leaf(-1, 1);
    let (reply, _) = tls_get(sidecar.addr, ca.clone(), Some(&good), "/m", "").await.unwrap();
    assert_eq!(reply.status, 200);
    for (who, client) in [
        ("no certificate", None),
        ("an expired certificate", Some(pki.leaf(-3, -1))),
        ("a certificate not valid yet", Some(pki.leaf(1, 2))),
        ("a certificate of another CA", Some(foreign.leaf(-1, 1))),
    ] {
        let outcome = tls_get(sidecar.addr, ca.clone(), client.as_ref(), "/m", "").await;
        assert!(outcome.is_err(), "{who} was let in: {:?}", outcome.map(|r| r.0.status));
    }
    assert_eq!(sidecar.metric("meshscrape_proxy_denied_total{reason=\"tls_handshake\"}"), 4.0);
    assert!(up.heads().len() == 1, "only the good client's scrape reached the app");
}

#[test]
fn unusable_files_are_configuration_errors_that_say_which_and_why() {
    let pki = Pki::new("broken");
    let good = pki.leaf(-1, 1);
    let expired = pki.leaf(-3, -1);
    let other = pki.leaf(-1, 1);
    let cert = pki.write("tls.crt", &good.cert_pem);
    let key = pki.write("tls.key", &good.key_pem);
    let load = |o: ProxyOverrides| {
        let config = ProxyConfig::load(None, &o).unwrap();
        App::new(&config).err().unwrap_or_default()
    };
    let tls = |cert: &Path, key: &Path| ProxyOverrides {
        tls_cert_file: Some(cert.display().to_string()),
        tls_key_file: Some(key.display().to_string()),
        ..Default::default()
    };
    for (o, says) in [
        (
            token_overrides(Path::new("/nonexistent/token")),
            "auth.bearerTokenFile /nonexistent/token: cannot read it",
        ),
        (token_overrides(&pki.write("empty", "\n")), "is empty"),
        (
            tls(&pki.write("expired.crt", &expired.cert_pem), &key),
            "the certificate expired on 2025-01-01 00:00:00 UTC",
        ),
        (tls(&cert, &pki.write("other.key", &other.key_pem)), "does not go with the certificate"),
        (tls(&pki.write("garbage.crt", "not a certificate"), &key), "holds no PEM certificate"),
        (tls(&cert, &pki.write("nokey", &good.cert_pem)), "tls.keyFile"),
    ] {
        let err = load(o);
        assert!(err.contains(says), "want {says:?}, got {err:?}");
    }
    assert!(load(tls(&cert, &key)).is_empty(), "the good pair loads");
}

/// The kubelet updates a Secret volume as it does a ConfigMap (a `..data` swap); the sidecar
/// picks up the new certificate while scrapes run, and none of them fails.
#[tokio::test]
async fn a_certificate_rotates_mid_traffic_without_a_failed_scrape() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let pki = Pki::new("rotate");
    let first = pki.leaf(-1, 1);
    let mut cert = ConfigMapDir::new("rotate-crt", "tls.crt", &first.cert_pem);
    let mut key = ConfigMapDir::new("rotate-key", "tls.key", &first.key_pem);
    let overrides = ProxyOverrides {
        tls_cert_file: Some(cert.path().display().to_string()),
        tls_key_file: Some(key.path().display().to_string()),
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(format!("http://{}", up.addr)),
        routes: vec!["/m=/m".into()],
        ..Default::default()
    };
    let sidecar = Sidecar::start(overrides.clone()).await;
    let mut reloader = Reloader::new(sidecar.app(), None, overrides);

    let addr = sidecar.addr;
    let ca = pki.ca_der();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = stop.clone();
    let traffic = tokio::spawn(async move {
        let mut served = Vec::new();
        while !running.load(std::sync::atomic::Ordering::SeqCst) {
            match tls_get(addr, ca.clone(), None, "/m", "").await {
                Ok((reply, cert)) if reply.status == 200 => served.push(cert),
                other => panic!("a scrape failed during the rotation: {:?}", other.map(|r| r.0)),
            }
        }
        served
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A broken certificate first: refused, the old one keeps serving.
    cert.update("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    match reloader.poll() {
        Some(Reloaded::Refused(why)) => assert!(why.contains("tls.certFile"), "{why}"),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The new pair: the key first (the kubelet updates a Secret's keys in one swap, but two
    // Secrets, or two polls, may see them apart), so the mismatch in between is refused too.
    let second = pki.leaf(-1, 2);
    key.update(&second.key_pem);
    assert!(matches!(reloader.poll(), Some(Reloaded::Refused(_))));
    cert.update(&second.cert_pem);
    assert!(matches!(reloader.poll(), Some(Reloaded::Applied { .. })));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = traffic.await.unwrap();
    assert!(served.len() > 3, "only {} scrapes ran", served.len());
    assert_eq!(served.first(), Some(&first.der));
    assert_eq!(served.last(), Some(&second.der), "new connections get the new certificate");
}
