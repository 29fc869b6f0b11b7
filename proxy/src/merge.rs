//! Merged routes: several loopback targets fetched together under one deadline and served as one
//! exposition, in one format.
//!
//! Every target is asked at once, with the scrape's own `Accept`. When their answers agree on a
//! format (Prometheus text, OpenMetrics, or delimited protobuf), the body is theirs, one after
//! the other, in the route's order. When they do not, the targets that did not answer in plain
//! text are asked again for text/plain 0.0.4, which every client library writes, and the body is
//! text: formats are never mixed in one body. A target that fails (no connection, no answer in
//! time, a status other than 2xx, a format that cannot be joined, more than `maxPartBytes`) is left
//! out and the scrape goes on with the rest; `meshscrape_merge_target_up`, appended to the body,
//! tells Prometheus which targets are in it, and `/-/metrics` counts why each was left out.
//!
//! Memory stays what the single-target path holds per scrape in flight: a merged scrape takes one
//! in-flight slot per target, reads at most one frame ahead of each target, and streams the
//! targets in turn, so those not yet streamed wait in their sockets under TCP backpressure.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::app::{App, Entry, Part, Table, classify, text, upstream_uri};
use crate::body::{BoxError, ProxyBody, Stream};
use crate::metrics::{PartFailure, UpstreamError};

/// The family of series appended to every merged body: 1 for each target in it, 0 for each left out.
pub const TARGET_UP: &str = "meshscrape_merge_target_up";

/// What a merge falls back to when its targets disagree: the format every client library writes.
const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition formats, by media type, as far as joining them goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain` (0.0.4, or 1.0.0 with UTF-8 names); also a body with no Content-Type, which
    /// is how Prometheus 2 read one.
    Text,
    /// `application/openmetrics-text`: each body ends with one `# EOF`, which the merge drops
    /// and writes once at the end.
    OpenMetrics,
    /// `application/vnd.google.protobuf` with `encoding=delimited`: length-prefixed MetricFamily
    /// messages, which join by concatenation.
    Protobuf,
    /// Anything else (JSON, HTML, a compressed body): cannot be joined.
    Other,
}

impl Format {
    /// The format of a response with these headers.
    pub fn of(headers: &HeaderMap) -> Format {
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return Format::Other;
        }
        let Some(ct) = headers.get(header::CONTENT_TYPE) else { return Format::Text };
        let Ok(ct) = ct.to_str() else { return Format::Other };
        let mut params = ct.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "" | "text/plain" => Format::Text,
            "application/openmetrics-text" => Format::OpenMetrics,
            "application/vnd.google.protobuf"
                if params.any(|p| p.trim().eq_ignore_ascii_case("encoding=delimited")) =>
            {
                Format::Protobuf
            }
            _ => Format::Other,
        }
    }
}

/// The `version` parameter of a Content-Type, for choosing the newest among agreeing parts.
fn version(ct: &HeaderValue) -> String {
    ct.to_str()
        .unwrap_or("")
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("version"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

/// One target's answer, read as far as its first body frame.
struct Fetched {
    format: Format,
    content_type: Option<HeaderValue>,
    first: Option<Bytes>,
    /// `None` when the first frame was the whole body.
    body: Option<Incoming>,
}

type Outcome = Result<Fetched, PartFailure>;

/// What every fetch of one scrape shares.
struct Ask<'a> {
    app: &'a App,
    table: &'a Table,
    route: &'a str,
    method: &'a Method,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    deadline: Instant,
}

impl Ask<'_> {
    async fn fetch(&self, part: &Part, accept: Option<&HeaderValue>) -> Outcome {
        let outcome = self.exchange(part, accept).await;
        if let Err(why) = &outcome {
            tracing::warn!(route = self.route, upstream = %part.url, reason = why.as_str(),
                "left a target out of the merged scrape");
        }
        outcome
    }

    async fn exchange(&self, part: &Part, accept: Option<&HeaderValue>) -> Outcome {
        // The query was checked once for the whole scrape; a path from the config is valid.
        let uri = upstream_uri(&part.path, self.query).ok_or(PartFailure::Protocol)?;
        let mut headers = self.headers.clone();
        headers.insert(header::HOST, part.host.clone());
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, accept.clone());
        }
        let mut req = Request::new(Empty::new());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;

        let connect = self.table.config.timeouts.connect;
        let sent = self.app.pool.request(part.addr, req, connect);
        let resp = match tokio::time::timeout_at(self.deadline, sent).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(err)) => {
                let (kind, reason) = classify(&err);
                self.app.metrics.upstream_error(kind);
                tracing::debug!(upstream = %part.url, "{reason}");
                return Err(match kind {
                    UpstreamError::Connect => PartFailure::Connect,
                    _ => PartFailure::Protocol,
                });
            }
            Err(_) => {
                self.app.metrics.upstream_error(UpstreamError::Timeout);
                return Err(PartFailure::Timeout);
            }
        };
        if !resp.status().is_success() {
            return Err(PartFailure::Status);
        }
        let cap = self.table.config.limits.max_part_bytes;
        let announced = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > cap) {
            return Err(PartFailure::TooLarge);
        }
        let format = Format::of(resp.headers());
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let mut body = resp.into_body();
        if *self.method == Method::HEAD {
            return Ok(Fetched { format, content_type, first: None, body: None });
        }
        // As on the single-target path, the first frame comes before the answer's head goes
        // out, so a target that breaks or stalls before its first byte is left out, not cut.
        let first = match tokio::time::timeout_at(self.deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame.into_data().ok(),
            Ok(None) => None,
            Ok(Some(Err(_))) => {
                self.app.metrics.upstream_error(UpstreamError::Body);
                return Err(PartFailure::Protocol);
            }
            Err(_) => {
                self.app.metrics.upstream_error(UpstreamError::Timeout);
                return Err(PartFailure::Timeout);
            }
        };
        if first.as_ref().is_some_and(|f| f.len() as u64 > cap) {
            return Err(PartFailure::TooLarge);
        }
        let body = (!body.is_end_stream()).then_some(body);
        Ok(Fetched { format, content_type, first, body })
    }
}

impl App {
    /// Answers a request for a merged route.
    pub(crate) async fn forward_merged<B>(
        &self,
        table: &Table,
        entry: &Entry,
        req: Request<B>,
    ) -> Response<ProxyBody> {
        forward(self, table, entry, req).await
    }
}

async fn forward<B>(
    app: &App,
    table: &Table,
    entry: &Entry,
    req: Request<B>,
) -> Response<ProxyBody> {
    let n = entry.parts.len();
    let Some(permit) = app.in_flight.try_take_many(n) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "too many requests in flight (limit {}, and this route merges {n} targets, each \
                    taking one); retry later",
                app.in_flight.max
            ),
        );
    };
    let budget = table.deadline(req.headers());
    let started = Instant::now();
    let deadline = started + budget;
    let (parts, _body) = req.into_parts();
    if upstream_uri("/", parts.uri.query()).is_none() {
        return text(StatusCode::BAD_REQUEST, "the query string is not valid in a request target");
    }
    let mut headers = table.upstream_headers(parts.headers, budget);
    // The parts are joined as they arrive, so they must arrive as they are.
    headers.remove(header::ACCEPT_ENCODING);
    let accept = headers.remove(header::ACCEPT);
    let route = entry.stats.label();
    let ask = Ask {
        app,
        table,
        route,
        method: &parts.method,
        headers: &headers,
        query: parts.uri.query(),
        deadline,
    };

    let mut outcomes =
        join_all(entry.parts.iter().map(|p| ask.fetch(p, accept.as_ref())).collect()).await;
    let formats: Vec<Format> = outcomes.iter().flatten().map(|f| f.format).collect();
    let agreed =
        formats.first().copied().filter(|f| *f != Format::Other && formats.iter().all(|g| g == f));
    let format = match agreed {
        Some(f) => f,
        None => {
            // They disagree: ask each target that did not answer in text once more, for text.
            let text_only = HeaderValue::from_static("text/plain;version=0.0.4");
            let again: Vec<usize> = outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| o.as_ref().is_ok_and(|f| f.format != Format::Text))
                .map(|(i, _)| i)
                .collect();
            // Their first answers are dropped (and their connections closed) before asking again.
            for &i in &again {
                outcomes[i] = Err(PartFailure::Format);
            }
            let refetched = join_all(
                again.iter().map(|&i| ask.fetch(&entry.parts[i], Some(&text_only))).collect(),
            )
            .await;
            for (i, outcome) in again.into_iter().zip(refetched) {
                outcomes[i] = match outcome {
                    Ok(f) if f.format == Format::Text => Ok(f),
                    Ok(_) => {
                        tracing::warn!(route, upstream = %entry.parts[i].url,
                            "left a target out of the merged scrape: it does not answer in \
                            plain text, and the other targets' format differs from its own");
                        Err(PartFailure::Format)
                    }
                    Err(e) => Err(e),
                };
            }
            Format::Text
        }
    };
    entry.stats.upstream_latency(started.elapsed());
    let up: Vec<(String, bool)> =
        entry.parts.iter().zip(&outcomes).map(|(p, o)| (p.url.clone(), o.is_ok())).collect();
    for (part, outcome) in entry.parts.iter().zip(&outcomes) {
        app.metrics.part(route, &part.url, outcome.as_ref().err().copied());
    }

    if outcomes.iter().all(Result::is_err) {
        let reasons: Vec<String> = entry
            .parts
            .iter()
            .zip(&outcomes)
            .filter_map(|(p, o)| o.as_ref().err().map(|why| format!("{}: {}", p.url, why.as_str())))
            .collect();
        let status = if outcomes.iter().all(|o| matches!(o, Err(PartFailure::Timeout))) {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        return text(
            status,
            &format!("every target of this merged route failed ({})", reasons.join(", ")),
        );
    }
    let included: Vec<Fetched> = outcomes.into_iter().flatten().collect();
    let content_type = content_type(format, &included);
    let mut resp = if parts.method == Method::HEAD {
        Response::new(ProxyBody::text(Bytes::new()))
    } else {
        let stream = Stream {
            metrics: app.metrics.clone(),
            route: entry.stats.clone(),
            bytes: 0,
            _permit: permit,
        };
        Response::new(ProxyBody::Merged {
            deadline,
            body: Box::pin(MergedBody::new(
                format,
                included,
                &up,
                table.config.limits.max_part_bytes,
                deadline,
                stream,
            )),
        })
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, content_type);
    resp
}

/// The merged body's Content-Type: the agreed format, at the newest version a part announced
/// (text 1.0.0 and OpenMetrics 1.0.0 read everything their older versions wrote).
fn content_type(format: Format, parts: &[Fetched]) -> HeaderValue {
    match format {
        Format::Text | Format::OpenMetrics => parts
            .iter()
            .filter_map(|p| p.content_type.clone())
            .filter(|ct| {
                Format::of(&HeaderMap::from_iter([(header::CONTENT_TYPE, ct.clone())])) == format
            })
            // The first part's, unless a later one announces a newer version.
            .fold(None, |best: Option<HeaderValue>, ct| match best {
                Some(b) if version(&b) >= version(&ct) => Some(b),
                _ => Some(ct),
            })
            .unwrap_or(HeaderValue::from_static(TEXT_0_0_4)),
        Format::Protobuf | Format::Other => parts
            .iter()
            .find_map(|p| p.content_type.clone())
            .unwrap_or(HeaderValue::from_static(TEXT_0_0_4)),
    }
}

/// Polls every future at once on this task (no spawn, so they may borrow) and returns their
/// outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// OpenMetrics bodies end with `# EOF` and an optional newline: this many bytes are held back
/// from each part until it is known whether they are its end.
const HOLD: usize = b"# EOF\n".len();

/// One included target's body, from its first frame on.
struct Included {
    first: Option<Bytes>,
    body: Option<Incoming>,
    bytes: u64,
}

/// The merged response body: each included target's body in turn, then the `up` series (and,
/// for OpenMetrics, the one `# EOF`).
pub struct MergedBody {
    format: Format,
    parts: VecDeque<Included>,
    current: Option<Included>,
    /// OpenMetrics: the current part's last bytes, held back (see [`HOLD`]).
    tail: Vec<u8>,
    /// The last byte sent of the current part, to end each part with a newline.
    last: Option<u8>,
    /// A second frame, when one poll had two to give.
    queued: Option<Bytes>,
    trailer: Option<Bytes>,
    cap: u64,
    deadline: Pin<Box<Sleep>>,
    stream: Stream,
}

impl MergedBody {
    fn new(
        format: Format,
        parts: Vec<Fetched>,
        up: &[(String, bool)],
        cap: u64,
        deadline: Instant,
        stream: Stream,
    ) -> Self {
        let parts = parts
            .into_iter()
            .map(|f| Included { first: f.first, body: f.body, bytes: 0 })
            .collect();
        MergedBody {
            format,
            parts,
            current: None,
            tail: Vec::new(),
            last: None,
            queued: None,
            trailer: Some(trailer(format, up)),
            cap,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            stream,
        }
    }

    fn emit(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.stream.bytes += data.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    /// The next piece of the current part's body: `Some(bytes)`, `None` at its end.
    fn next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, BoxError>> {
        let Some(part) = self.current.as_mut() else { return Poll::Ready(Ok(None)) };
        if let Some(first) = part.first.take() {
            return Poll::Ready(Ok(Some(first)));
        }
        let Some(body) = part.body.as_mut() else { return Poll::Ready(Ok(None)) };
        loop {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => return Poll::Ready(Ok(Some(data))),
                    Err(_) => continue, // trailers: not part of an exposition
                },
                Poll::Ready(Some(Err(e))) => {
                    self.stream.metrics.upstream_error(UpstreamError::Body);
                    tracing::warn!(route = self.stream.route.label(), error = %e,
                        "a target's body broke off; cutting the merged response");
                    return Poll::Ready(Err(e.into()));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(None)),
                Poll::Pending => {
                    ready!(self.deadline.as_mut().poll(cx));
                    self.stream.metrics.upstream_error(UpstreamError::Timeout);
                    tracing::warn!(
                        route = self.stream.route.label(),
                        "a target's body did not finish before the deadline; cutting the merged \
                        response"
                    );
                    return Poll::Ready(Err("upstream body passed its deadline".into()));
                }
            }
        }
    }
}

impl Body for MergedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(queued) = this.queued.take() {
                return this.emit(queued);
            }
            if this.current.is_none() {
                match this.parts.pop_front() {
                    Some(next) => {
                        this.current = Some(next);
                        this.tail.clear();
                        this.last = None;
                        continue;
                    }
                    None => {
                        return match this.trailer.take() {
                            Some(t) => this.emit(t),
                            None => Poll::Ready(None),
                        };
                    }
                }
            }
            match ready!(this.next_chunk(cx)) {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Some(data)) => {
                    if let Some(part) = this.current.as_mut() {
                        part.bytes += data.len() as u64;
                        if part.bytes > this.cap {
                            tracing::warn!(
                                route = this.stream.route.label(),
                                cap = this.cap,
                                "a target's body passed limits.maxPartBytes; cutting the merged \
                                response"
                            );
                            return Poll::Ready(Some(Err(
                                "a part of the merged body passed limits.maxPartBytes".into(),
                            )));
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    if this.format != Format::OpenMetrics {
                        this.last = data.last().copied();
                        return this.emit(data);
                    }
                    // Hold back the last HOLD bytes of what has arrived.
                    if this.tail.len() + data.len() <= HOLD {
                        this.tail.extend_from_slice(&data);
                        continue;
                    }
                    if data.len() >= HOLD {
                        let cut = data.len() - HOLD;
                        let held = std::mem::replace(&mut this.tail, data[cut..].to_vec());
                        let body = data.slice(..cut);
                        if let Some(b) = body.last().or(held.last()) {
                            this.last = Some(*b);
                        }
                        if held.is_empty() {
                            return this.emit(body);
                        }
                        this.queued = (!body.is_empty()).then_some(body);
                        return this.emit(Bytes::from(held));
                    }
                    this.tail.extend_from_slice(&data);
                    let cut = this.tail.len() - HOLD;
                    let out: Vec<u8> = this.tail.drain(..cut).collect();
                    this.last = out.last().copied().or(this.last);
                    return this.emit(Bytes::from(out));
                }
                Ok(None) => {
                    // The part is over: drop its `# EOF`, and end it with a newline.
                    this.current = None;
                    let mut end = std::mem::take(&mut this.tail);
                    if this.format == Format::OpenMetrics {
                        strip_eof(&mut end, this.last);
                    }
                    let last = end.last().copied().or(this.last);
                    if this.format != Format::Protobuf && last.is_some_and(|b| b != b'\n') {
                        end.push(b'\n');
                    }
                    if !end.is_empty() {
                        return this.emit(Bytes::from(end));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailer.is_none() && self.queued.is_none() && self.current.is_none()
    }
}

/// Drops a final `# EOF` line (with or without its newline) from `end`, the last bytes of an
/// OpenMetrics body; `before` is the byte sent just before them.
fn strip_eof(end: &mut Vec<u8>, before: Option<u8>) {
    for suffix in [&b"# EOF\n"[..], &b"# EOF"[..]] {
        if end.ends_with(suffix) {
            let at = end.len() - suffix.len();
            let prev = if at > 0 { Some(end[at - 1]) } else { before };
            if prev.is_none_or(|b| b == b'\n') {
                end.truncate(at);
            }
            return;
        }
    }
}

/// The series that tell Prometheus which targets are in this scrape, in the body's format.
fn trailer(format: Format, up: &[(String, bool)]) -> Bytes {
    if format == Format::Protobuf {
        return Bytes::from(protobuf_gauge(
            TARGET_UP,
            "1 if the target's metrics are in this scrape, 0 if it failed and was left out.",
            up,
        ));
    }
    let mut out = format!(
        "# HELP {TARGET_UP} 1 if the target's metrics are in this scrape, 0 if it failed and was \
            left out.\n# TYPE {TARGET_UP} gauge\n"
    );
    for (target, included) in up {
        // Target URLs are loopback http URLs with checked paths: no quote or backslash to escape.
        out.push_str(&format!("{TARGET_UP}{{target=\"{target}\"}} {}\n", u8::from(*included)));
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    Bytes::from(out)
}

/// A gauge MetricFamily (io.prometheus.client, metrics.proto) with one `target` label per
/// sample, length-delimited as a protobuf scrape body carries it.
fn protobuf_gauge(name: &str, help: &str, samples: &[(String, bool)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }
    let mut family = Vec::new();
    bytes_field(&mut family, 1, name.as_bytes()); // name
    bytes_field(&mut family, 2, help.as_bytes()); // help
    varint(&mut family, 3 << 3); // type = GAUGE (1)
    varint(&mut family, 1);
    for (target, up) in samples {
        let mut pair = Vec::new();
        bytes_field(&mut pair, 1, b"target"); // LabelPair.name
        bytes_field(&mut pair, 2, target.as_bytes()); // LabelPair.value
        let mut gauge = Vec::new();
        varint(&mut gauge, 1 << 3 | 1); // Gauge.value, a double
        gauge.extend_from_slice(&(if *up { 1.0f64 } else { 0.0 }).to_le_bytes());
        let mut metric = Vec::new();
        bytes_field(&mut metric, 1, &pair); // Metric.label
        bytes_field(&mut metric, 2, &gauge); // Metric.gauge
        bytes_field(&mut family, 4, &metric); // MetricFamily.metric
    }
    let mut out = Vec::with_capacity(family.len() + 4);
    varint(&mut out, family.len() as u64);
    out.extend_from_slice(&family);
    out
}

#[cfg(test)]
mod tests;
