//! A bounded HTTP GET: plain http only, a deadline on the whole exchange, a cap on the body,
//! gzip decoded within the same cap. Every failure is a [`FetchError`], never a panic or a hang.

use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::FetchError;

/// What came back.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

/// GETs `url` with `headers`, within `timeout`, reading at most `max_bytes` (after decoding).
pub async fn get(
    url: &str,
    headers: &[(&str, String)],
    timeout: Duration,
    max_bytes: usize,
) -> Result<Fetched, FetchError> {
    get_with(url, headers, timeout, max_bytes, None).await
}

/// `get`, over TLS when `url` is https: `tls` says which CA to trust, which client certificate
/// to present and which name to expect (see [`tls::client`](crate::tls::client)).
pub async fn get_with(
    url: &str,
    headers: &[(&str, String)],
    timeout: Duration,
    max_bytes: usize,
    tls: Option<&crate::tls::Client>,
) -> Result<Fetched, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::NotUrl(url.to_string()))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") if tls.is_some() => true,
        Some("https") => return Err(FetchError::Https(url.to_string())),
        _ => return Err(FetchError::NotHttp(url.to_string())),
    };
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Exchange(format!("cannot send this request: {e}")))?;
    let client = match tls.filter(|_| https) {
        Some(tls) => {
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*tls.config).clone())
                .https_only();
            let builder = match &tls.server_name {
                Some(name) => builder.with_server_name_resolver(
                    hyper_rustls::FixedServerNameResolver::new(name.clone()),
                ),
                None => builder,
            };
            Client::builder(TokioExecutor::new()).build(builder.enable_http1().build())
        }
        None => Client::builder(TokioExecutor::new()).build(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(crate::tls::plain_only())
                .https_or_http()
                .enable_http1()
                .build(),
        ),
    };
    let started = Instant::now();
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| describe(&e))?;
        let (parts, mut body) = resp.into_parts();
        let mut raw = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| FetchError::BodyBroke(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if raw.len() + data.len() > max_bytes {
                    return Err(FetchError::TooLarge(max_bytes));
                }
                raw.extend_from_slice(data);
            }
        }
        Ok((parts, raw))
    };
    let (parts, raw) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout(timeout.as_secs_f64()))??;
    let gzip = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(FetchError::Gzip)?;
        if out.len() > max_bytes {
            return Err(FetchError::DecodesTooLarge(max_bytes));
        }
        out
    } else {
        raw
    };
    Ok(Fetched { status: parts.status, headers: parts.headers, body, elapsed: started.elapsed() })
}

fn describe(e: &hyper_util::client::legacy::Error) -> FetchError {
    let text = meshscrape_common::error::chain(e);
    if text.contains("invalid HTTP version")
        || text.contains("invalid HTTP status")
        || text.contains("parse")
    {
        FetchError::NotHttp1(text)
    } else if e.is_connect() {
        FetchError::Connect(text)
    } else {
        FetchError::Exchange(text)
    }
}
