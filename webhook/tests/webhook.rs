//! The webhook over TLS as the API server calls it, with certificates made here (rcgen): reviews
//! in, patches out; what it refuses and why; a plaintext client; a rotated and a broken
//! certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshscrape_common::AppConfig;
use meshscrape_gen::templates::Templates;
use meshscrape_webhook::{Renewal, Tls, Webhook, serve};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_key: String,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("meshscrape-webhook-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // The name meshscrape-gen gives the webhook's CA, which the webhook's renewals name as
        // their issuer.
        p.distinguished_name.push(rcgen::DnType::CommonName, "meshscrape-webhook CA");
        let key = KeyPair::generate().unwrap();
        let ca_key = key.serialize_pem();
        Pki { dir, ca: CertifiedIssuer::self_signed(p, key).unwrap(), ca_key }
    }

    /// A serving certificate for the webhook's Service name, written as tls.crt and tls.key.
    fn issue(&self) -> CertificateDer<'static> {
        self.issue_for(365 * 24)
    }

    /// The same, valid from two days ago for `hours` more hours.
    fn issue_for(&self, hours: u64) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["meshscrape-webhook.meshscrape-system.svc".to_string()])
                .unwrap();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + Duration::from_secs(now - 2 * 86_400);
        params.not_after = epoch + Duration::from_secs(now + hours * 3600);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(self.dir.join("tls.key"), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    /// Puts the CA's key beside the certificate, as meshscrape-gen's Secret does.
    fn with_ca_key(&self) {
        std::fs::write(self.dir.join("ca.key"), &self.ca_key).unwrap();
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn start(pki: &Pki) -> (SocketAddr, Arc<Webhook>, Arc<Tls>) {
    let config = AppConfig::load(&root().join("examples/identity-service.yaml")).unwrap();
    let webhook =
        Arc::new(Webhook::new(config, Templates::load(None).unwrap(), "meshscrape-system".into()));
    let tls = Arc::new(
        Tls::load(
            pki.dir.join("tls.crt"),
            pki.dir.join("tls.key"),
            Renewal::beside(&pki.dir.join("tls.crt"), "meshscrape-webhook", "meshscrape-system"),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (w, t) = (webhook.clone(), tls.clone());
    tokio::spawn(async move {
        serve(listener, w, t, std::future::pending(), Duration::from_secs(1)).await
    });
    (addr, webhook, tls)
}

/// One HTTPS exchange as the API server makes it: trusting `ca`, expecting the Service's name.
/// (status, body, the certificate served); `Err` when TLS fails.
async fn call(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, String, CertificateDer<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("meshscrape-webhook.meshscrape-system.svc").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: webhook\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    // A body the server refuses early may not be read whole; the answer still comes back.
    let _ = tls.write_all(body).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(format!("no answer: {text:?}"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    Ok((status, body.to_string(), served))
}

fn review(annotations: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "uid-1", "operation": "CREATE", "namespace": "tools",
            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "shop"}}, "template": {
                    "metadata": {"labels": {"app": "shop"}, "annotations": annotations},
                    "spec": {"containers": [{"name": "shop", "image": "shop:1"}]}}}}}
    }))
    .unwrap()
}

/// The body is chunked by nobody here (Content-Length, Connection: close): the JSON as sent.
fn response(body: &str) -> Value {
    serde_json::from_str::<Value>(body).unwrap()["response"].clone()
}

#[tokio::test]
async fn reviews_over_tls_get_patches_as_the_api_server_expects() {
    let pki = Pki::new("reviews");
    let ca = pki.ca.der().clone();
    pki.issue();
    let (addr, _webhook, _tls) = start(&pki).await;
    let json = "application/json";

    let (status, body, _) =
        call(addr, &ca, "POST", "/inject", json, &review(json!({"meshscrape.io/inject": "true"})))
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let r = response(&body);
    assert_eq!((r["uid"].as_str(), r["allowed"].as_bool()), (Some("uid-1"), Some(true)));
    assert_eq!(r["patchType"], "JSONPatch");

    // Without the annotation: nothing on /inject, the sidecar on /inject-namespace.
    let (_, body, _) = call(addr, &ca, "POST", "/inject", json, &review(json!({}))).await.unwrap();
    assert!(response(&body).get("patch").is_none(), "{body}");
    let (_, body, _) =
        call(addr, &ca, "POST", "/inject-namespace", json, &review(json!({}))).await.unwrap();
    assert_eq!(response(&body)["patchType"], "JSONPatch", "{body}");

    let (status, body, _) = call(addr, &ca, "GET", "/metrics", "text/plain", b"").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("meshscrape_webhook_reviews_total{decision=\"injected\"} 2"), "{body}");
    assert!(body.contains("meshscrape_webhook_reviews_total{decision=\"skipped\"} 1"), "{body}");
    assert_eq!(call(addr, &ca, "GET", "/healthz", "text/plain", b"").await.unwrap().0, 200);
    assert_eq!(call(addr, &ca, "GET", "/readyz", "text/plain", b"").await.unwrap().0, 200);
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let pki = Pki::new("refusals");
    let ca = pki.ca.der().clone();
    pki.issue();
    let (addr, _webhook, _tls) = start(&pki).await;
    let body = review(json!({"meshscrape.io/inject": "true"}));
    for (method, path, content_type, payload, want, says) in [
        ("POST", "/inject", "text/plain", body.clone(), 415, "application/json"),
        ("GET", "/inject", "application/json", Vec::new(), 405, "wrong method"),
        ("POST", "/elsewhere", "application/json", body.clone(), 404, "no such path"),
        ("POST", "/inject", "application/json", b"{not json".to_vec(), 400, "not JSON"),
        ("POST", "/inject", "application/json", vec![b' '; 5 << 20], 413, "larger than"),
    ] {
        let (status, text, _) =
            call(addr, &ca, method, path, content_type, &payload).await.unwrap();
        assert_eq!(status, want, "{method} {path}: {text}");
        assert!(text.contains(says), "{method} {path}: {text}");
    }
    // A client that does not speak TLS gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&buf));
}

#[tokio::test]
async fn a_rotated_certificate_is_served_and_a_broken_one_keeps_the_old() {
    let pki = Pki::new("rotation");
    let ca = pki.ca.der().clone();
    let first = pki.issue();
    let (addr, webhook, tls) = start(&pki).await;
    assert_eq!(call(addr, &ca, "GET", "/healthz", "text/plain", b"").await.unwrap().2, first);
    assert!(tls.reload().is_none(), "nothing changed");

    std::fs::write(pki.dir.join("tls.crt"), "not a certificate").unwrap();
    let refused = tls.reload().unwrap().unwrap_err();
    assert!(refused.contains("tls.crt"), "{refused}");
    assert_eq!(call(addr, &ca, "GET", "/healthz", "text/plain", b"").await.unwrap().2, first);

    let second = pki.issue();
    assert!(tls.reload().unwrap().is_ok());
    assert_eq!(call(addr, &ca, "GET", "/healthz", "text/plain", b"").await.unwrap().2, second);
    drop(webhook);
}

/// With the CA's key beside its certificate (as meshscrape-gen writes the Secret), the webhook
/// renews a certificate near its end itself: the next client gets one that lasts, signed by the
/// CA the caBundle trusts. Without the key, it does not try.
#[tokio::test]
async fn a_certificate_near_its_end_is_renewed_from_the_ca_key() {
    let pki = Pki::new("renewal");
    let ca = pki.ca.der().clone();
    let first = pki.issue_for(1); // an hour left of a two-day life: due
    let (addr, _webhook, tls) = start(&pki).await;
    let now = meshscrape_common::x509::now_secs();
    assert!(tls.renew_if_due(now).is_none(), "no CA key: no renewal");

    pki.with_ca_key();
    let (addr2, _webhook2, tls2) = start(&pki).await;
    let before = tls2.not_after();
    assert!(matches!(tls2.renew_if_due(now), Some(Ok(()))));
    assert!(tls2.not_after() > before, "the new certificate lasts longer");
    let (status, _, served) = call(addr2, &ca, "GET", "/healthz", "text/plain", b"").await.unwrap();
    assert_eq!(status, 200, "the client trusts the renewed certificate through the same CA");
    assert_ne!(served, first);
    assert!(tls2.renew_if_due(now).is_none(), "not due again");
    // The first webhook, without the key, still serves its own.
    assert_eq!(call(addr, &ca, "GET", "/healthz", "text/plain", b"").await.unwrap().2, first);
    drop(tls);
}
