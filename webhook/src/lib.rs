//! `meshscrape-webhook`: a mutating admission webhook that adds the meshscrape sidecar to pod
//! templates that ask for it. The decision and the patch are meshscrape-gen's
//! ([`meshscrape_gen::admission`], over `gen inject`'s code); this crate is the HTTPS front door,
//! with the same habits as the sidecar: TLS only, a bounded body, deadlines, health and metrics
//! endpoints, a graceful drain, and a certificate reread when its files change.
//!
//! - `POST /inject`: the object opts in (`meshscrape.io/inject: "true"` on the pod template);
//! - `POST /inject-namespace`: its namespace opted in (`meshscrape.io/inject=enabled`, selected by
//!   the MutatingWebhookConfiguration), unless the template says `"false"`;
//! - `GET /healthz`, `/readyz` (503 while draining), `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use meshscrape_common::AppConfig;
use meshscrape_gen::admission::{self, Decision, Scope};
use meshscrape_gen::templates::Templates;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// The largest AdmissionReview read: Kubernetes objects are at most about 1.5 MiB, and a review
/// holds the object (and the old one on UPDATE) with a little around it.
pub const MAX_BODY: usize = 4 << 20;
/// A request's head and body must arrive within this; the API server gives up after 10 s anyway.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    injected: AtomicU64,
    skipped: AtomicU64,
    refused: AtomicU64,
    tls_reloads: [AtomicU64; 2],
    tls_renewals: [AtomicU64; 2],
}

/// What the webhook serves with.
pub struct Webhook {
    config: AppConfig,
    templates: Templates,
    own_namespace: String,
    draining: AtomicBool,
    pub metrics: Metrics,
}

impl Webhook {
    pub fn new(config: AppConfig, templates: Templates, own_namespace: String) -> Self {
        Webhook {
            config,
            templates,
            own_namespace,
            draining: AtomicBool::new(false),
            metrics: Metrics::default(),
        }
    }

    /// Answers one request; never fails, every problem is a status and a one-line reason.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        match (parts.method.clone(), path) {
            (Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
            (Method::GET, "/readyz") if self.draining.load(Relaxed) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining")
            }
            (Method::GET, "/readyz") => text(StatusCode::OK, "ready"),
            (Method::GET, "/metrics") => {
                let mut r = Response::new(Full::new(Bytes::from(self.render_metrics())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            (Method::POST, "/inject" | "/inject-namespace") => {
                let json = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| {
                        v.split(';').next().is_some_and(|m| m.trim() == "application/json")
                    });
                if !json {
                    return text(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "send an AdmissionReview as application/json",
                    );
                }
                let bytes = match Limited::new(body, MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                        self.metrics.refused.fetch_add(1, Relaxed);
                        return text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            &format!("the review is larger than {MAX_BODY} bytes"),
                        );
                    }
                    Err(e) => {
                        return text(StatusCode::BAD_REQUEST, &format!("reading the body: {e}"));
                    }
                };
                let scope = Scope {
                    own_namespace: self.own_namespace.clone(),
                    namespace_opted_in: path == "/inject-namespace",
                };
                match admission::review(&self.config, &self.templates, &bytes, &scope) {
                    Ok((answer, decision)) => {
                        match &decision {
                            Decision::Injected => self.metrics.injected.fetch_add(1, Relaxed),
                            Decision::Skipped(_) => self.metrics.skipped.fetch_add(1, Relaxed),
                        };
                        tracing::info!(?decision, "reviewed");
                        let mut r = Response::new(Full::new(Bytes::from(answer.to_string())));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static("application/json"),
                        );
                        r
                    }
                    Err(e) => {
                        self.metrics.refused.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, "refused a request");
                        text(StatusCode::BAD_REQUEST, &e.to_string())
                    }
                }
            }
            (_, "/inject" | "/inject-namespace" | "/healthz" | "/readyz" | "/metrics") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this path")
            }
            _ => text(StatusCode::NOT_FOUND, "no such path; POST /inject or /inject-namespace"),
        }
    }

    fn render_metrics(&self) -> String {
        let m = &self.metrics;
        format!(
            "# HELP meshscrape_webhook_reviews_total AdmissionReviews answered, by decision.\n\
             # TYPE meshscrape_webhook_reviews_total counter\n\
             meshscrape_webhook_reviews_total{{decision=\"injected\"}} {}\n\
             meshscrape_webhook_reviews_total{{decision=\"skipped\"}} {}\n\
             meshscrape_webhook_reviews_total{{decision=\"refused\"}} {}\n\
             # HELP meshscrape_webhook_tls_reloads_total Rereads of the serving certificate, by result.\n\
             # TYPE meshscrape_webhook_tls_reloads_total counter\n\
             meshscrape_webhook_tls_reloads_total{{result=\"success\"}} {}\n\
             meshscrape_webhook_tls_reloads_total{{result=\"failure\"}} {}\n\
             # HELP meshscrape_webhook_tls_renewals_total Serving certificates the webhook renewed itself, by result.\n\
             # TYPE meshscrape_webhook_tls_renewals_total counter\n\
             meshscrape_webhook_tls_renewals_total{{result=\"success\"}} {}\n\
             meshscrape_webhook_tls_renewals_total{{result=\"failure\"}} {}\n",
            m.injected.load(Relaxed),
            m.skipped.load(Relaxed),
            m.refused.load(Relaxed),
            m.tls_reloads[0].load(Relaxed),
            m.tls_reloads[1].load(Relaxed),
            m.tls_renewals[0].load(Relaxed),
            m.tls_renewals[1].load(Relaxed),
        )
    }
}

fn text(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The serving certificate and key files; reread when they change (a Secret's `..data` swap,
/// cert-manager's renewal, or gen's rotation), kept when the new ones are broken. When the CA's
/// key sits beside them (`ca.key`, as `meshscrape-gen webhook` writes the Secret), the webhook
/// also renews the serving certificate itself before it expires, signed by that CA, which the
/// MutatingWebhookConfiguration's caBundle already trusts.
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
    seen: RwLock<(Vec<u8>, Vec<u8>)>,
    /// (not before, not after) of the certificate in force.
    validity: RwLock<(i64, i64)>,
    renewal: Option<Renewal>,
}

/// What the webhook renews its serving certificate with.
pub struct Renewal {
    /// The CA's common name, as meshscrape-gen named it (`<service> CA`): a certificate it signs
    /// names it as its issuer.
    pub ca_name: String,
    pub ca_key: String,
    /// The Service's DNS names the certificate must carry.
    pub names: Vec<String>,
}

impl Renewal {
    /// The names meshscrape-gen gives the webhook's certificate, and the CA key beside the
    /// certificate file, if there is one.
    pub fn beside(cert_file: &Path, service: &str, namespace: &str) -> Option<Renewal> {
        let ca_key = std::fs::read_to_string(cert_file.with_file_name("ca.key")).ok()?;
        Some(Renewal {
            ca_name: format!("{service} CA"),
            ca_key,
            names: vec![
                service.to_string(),
                format!("{service}.{namespace}"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
            ],
        })
    }
}

impl Tls {
    pub fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        renewal: Option<Renewal>,
    ) -> Result<Tls, String> {
        let (cert, key) = read_pair(&cert_file, &key_file)?;
        let (config, validity) = server_config(&cert, &key, &cert_file, &key_file)?;
        Ok(Tls {
            cert_file,
            key_file,
            current: RwLock::new(config),
            seen: RwLock::new((cert, key)),
            validity: RwLock::new(validity),
            renewal,
        })
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// When the certificate in force expires, in seconds since the epoch.
    pub fn not_after(&self) -> i64 {
        self.validity.read().unwrap_or_else(std::sync::PoisonError::into_inner).1
    }

    /// Renews the serving certificate in memory when a third of its lifetime (at most 30 days)
    /// is left and the CA's key is at hand: `Some(Ok)` renewed, `Some(Err)` failed (the old one
    /// stays), `None` not due or no CA key.
    pub fn renew_if_due(&self, now: i64) -> Option<Result<(), String>> {
        let renewal = self.renewal.as_ref()?;
        let (not_before, not_after) =
            *self.validity.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let margin = ((not_after - not_before) / 3).min(30 * 86_400);
        if now < not_after - margin {
            return None;
        }
        Some(self.renew(renewal, now, (not_after - not_before).clamp(86_400, 366 * 86_400)))
    }

    fn renew(&self, r: &Renewal, now: i64, lifetime: i64) -> Result<(), String> {
        use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
        let fail = |e: rcgen::Error| format!("renewing the serving certificate: {e}");
        let ca_key = KeyPair::from_pem(&r.ca_key).map_err(fail)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params.distinguished_name.push(DnType::CommonName, r.ca_name.clone());
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(r.names.clone()).map_err(fail)?;
        if let Some(cn) = r.names.get(2) {
            params.distinguished_name.push(DnType::CommonName, cn.clone());
        }
        let at =
            |secs: i64| time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| e.to_string());
        params.not_before = at(now - 3600)?;
        params.not_after = at(now + lifetime)?;
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &issuer).map_err(fail)?;
        let (config, validity) = server_config(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            &self.cert_file,
            &self.key_file,
        )?;
        self.install(config, validity);
        Ok(())
    }

    /// Puts a certificate in force for the next connections.
    fn install(&self, config: Arc<ServerConfig>, validity: (i64, i64)) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        *self.validity.write().unwrap_or_else(std::sync::PoisonError::into_inner) = validity;
    }

    /// Rereads the files; `Some(Ok)` when a new pair took effect, `Some(Err)` when a changed pair
    /// was refused, `None` when nothing changed.
    pub fn reload(&self) -> Option<Result<(), String>> {
        let (cert, key) = match read_pair(&self.cert_file, &self.key_file) {
            Ok(pair) => pair,
            Err(e) => return Some(Err(e)),
        };
        {
            let seen = self.seen.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.0 == cert && seen.1 == key {
                return None;
            }
        }
        let result = server_config(&cert, &key, &self.cert_file, &self.key_file)
            .map(|(config, validity)| self.install(config, validity));
        *self.seen.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (cert, key);
        Some(result)
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok((read(cert)?, read(key)?))
}

fn server_config(
    cert: &[u8],
    key: &[u8],
    cert_file: &Path,
    key_file: &Path,
) -> Result<(Arc<ServerConfig>, (i64, i64)), String> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{} holds no PEM certificate", cert_file.display()));
    };
    let validity = meshscrape_common::x509::validity(leaf)
        .ok_or_else(|| format!("{}: not a valid X.509 certificate", cert_file.display()))?;
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                format!("{} does not go with {}: {e}", key_file.display(), cert_file.display())
            })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), validity))
}

/// Serves `webhook` over TLS on `listener` until `shutdown`, then drains for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    webhook: Arc<Webhook>,
    tls: Arc<Tls>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(REQUEST_TIMEOUT).keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let reloader = {
        let (tls, webhook) = (tls.clone(), webhook.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                match tls.reload() {
                    Some(Ok(())) => {
                        webhook.metrics.tls_reloads[0].fetch_add(1, Relaxed);
                        tracing::info!("serving certificate reloaded");
                    }
                    Some(Err(e)) => {
                        webhook.metrics.tls_reloads[1].fetch_add(1, Relaxed);
                        tracing::error!(
                            "kept the serving certificate; the new one is unusable: {e}"
                        );
                    }
                    None => {}
                }
                match tls.renew_if_due(meshscrape_common::x509::now_secs()) {
                    Some(Ok(())) => {
                        webhook.metrics.tls_renewals[0].fetch_add(1, Relaxed);
                        tracing::info!(
                            not_after = tls.not_after(),
                            "renewed the serving certificate"
                        );
                    }
                    Some(Err(e)) => {
                        webhook.metrics.tls_renewals[1].fetch_add(1, Relaxed);
                        tracing::error!("{e}");
                    }
                    None => {}
                }
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
        let (http, watcher, webhook) = (http.clone(), graceful.watcher(), webhook.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |req| {
                let webhook = webhook.clone();
                async move {
                    let answer = tokio::time::timeout(REQUEST_TIMEOUT, webhook.handle(req)).await;
                    Ok::<_, Infallible>(answer.unwrap_or_else(|_| {
                        text(StatusCode::REQUEST_TIMEOUT, "the review did not arrive in time")
                    }))
                }
            });
            let conn = watcher.watch(http.serve_connection(TokioIo::new(tls), service));
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    reloader.abort();
    webhook.draining.store(true, Relaxed);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; cut the remaining connections"),
    }
}
