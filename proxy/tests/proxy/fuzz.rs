//! Mutation fuzzing on both sides of the sidecar, with a seeded generator so that a failure can be
//! replayed: valid request heads and valid app responses, mangled byte by byte and token by token.
//!
//! `MESHSCRAPE_FUZZ_SEED=N` replays one run (every failure names its seed and case);
//! `MESHSCRAPE_FUZZ_CASES=N` runs more cases than the default.
//!
//! What must hold for every case, whatever the bytes:
//! - the sidecar answers or closes the connection in bounded time, with a status the contract names
//!   and a one-line reason for every error;
//! - the app sees only GET or HEAD for the configured target, with no hop-by-hop field, no
//!   framing field and no body;
//! - afterwards the sidecar still serves a scrape, and nothing is left counted as in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshscrape_common::ProxyOverrides;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::support::{Script, Sidecar, Upstream, get, parse_reply};

/// Cases run at once: enough to overlap connections, under the in-flight limit.
const PARALLEL: usize = 24;
/// The sidecar's limits in these tests, and the bound on any one case.
const HEAD_TIMEOUT: &str = "200ms";
const UPSTREAM_TIMEOUT: &str = "500ms";
const CASE_BOUND: Duration = Duration::from_secs(3);

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn seed() -> u64 {
    std::env::var("MESHSCRAPE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d65_7368_7363_7261)
}

fn cases(default: usize) -> usize {
    std::env::var("MESHSCRAPE_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Bytes a mutation may drop in: the separators and escapes that parsers trip on.
const BYTES: &[u8] = b"\0\r\n \t:;,/\\.%?#@\x7f\x80\xff0aZ";

/// Tokens a mutation may drop in: the fields and path pieces that smuggling and traversal use.
const TOKENS: &[&[u8]] = &[
    b"..",
    b"%2e%2e",
    b"%2F",
    b"//",
    b"/-/",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r\nTransfer-Encoding: chunked",
    b"\r\nContent-Length: 5",
    b"\r\nContent-Length: 99999999999999999999",
    b"\r\nConnection: upgrade, x-hop\r\nUpgrade: h2c\r\nx-hop: 1",
    b"\r\nExpect: 100-continue",
    b"\r\nTE: trailers",
    b"\r\nX-Prometheus-Scrape-Timeout-Seconds: -1",
    b"\r\nX-Prometheus-Scrape-Timeout-Seconds: 1e308",
    b"\r\nHost: 127.0.0.1:22",
    b" HTTP/1.0",
    b"http://127.0.0.1:22/",
    b"CONNECT ",
    b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
];

/// One random edit of `input`: a byte replaced, inserted or removed, a run dropped, doubled or
/// cut off, or a token inserted.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let at = rng.below(input.len() + 1);
    match rng.below(7) {
        0 if at < input.len() => input[at] = *rng.pick(BYTES),
        1 => input.insert(at, *rng.pick(BYTES)),
        2 if at < input.len() => {
            let end = (at + 1 + rng.below(16)).min(input.len());
            input.drain(at..end);
        }
        3 if at < input.len() => {
            let end = (at + 1 + rng.below(32)).min(input.len());
            let run = input[at..end].to_vec();
            input.splice(at..at, run);
        }
        4 => input.truncate(at),
        5 => {
            let token = rng.pick(TOKENS);
            input.splice(at..at, token.iter().copied());
        }
        _ => {
            // Long runs: a field value or path piece thousands of bytes long.
            let n = 1 + rng.below(20_000);
            input.splice(at..at, std::iter::repeat_n(*rng.pick(b"a/%."), n));
        }
    }
}

fn mutated(rng: &mut Rng, corpus: &[&[u8]]) -> Vec<u8> {
    let mut bytes = rng.pick(corpus).to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut bytes);
    }
    bytes
}

fn shown(bytes: &[u8]) -> String {
    let s = bytes.escape_ascii().to_string();
    if s.len() > 400 { format!("{}... ({} bytes)", &s[..400], bytes.len()) } else { s }
}

/// Whether the message head in `bytes` (up to its first empty line) has a well-formed
/// `Connection` field naming `x-hop`, which makes `x-hop` a hop-by-hop field.
fn connection_names_x_hop(bytes: &[u8]) -> bool {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(bytes.len());
    // hyper, like most parsers, also ends a field line at a bare LF.
    String::from_utf8_lossy(&bytes[..end]).split('\n').skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && value.split(',').any(|t| t.trim().eq_ignore_ascii_case("x-hop"))
        })
    })
}

/// Writes `request` (tolerating a sidecar that closes first) and reads until the sidecar closes.
/// `Err` when the case outlives `CASE_BOUND`.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, ()> {
    let work = async {
        let mut s = TcpStream::connect(addr).await.expect("the sidecar accepts");
        // No half-close after writing: hyper, like most servers, takes it as the client leaving.
        let _ = s.write_all(request).await;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        buf
    };
    tokio::time::timeout(CASE_BOUND, work).await.map_err(|_| ())
}

/// Runs every request against the sidecar, `PARALLEL` at a time, and returns the replies in order.
async fn exchange_all(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<Result<Vec<u8>, ()>> {
    let mut replies: Vec<Option<Result<Vec<u8>, ()>>> = vec![None; requests.len()];
    let mut running = JoinSet::new();
    for (i, request) in requests.iter().enumerate() {
        if running.len() == PARALLEL
            && let Some(done) = running.join_next().await
        {
            let (j, reply) = done.expect("a case task panicked");
            replies[j] = Some(reply);
        }
        let request = request.clone();
        running.spawn(async move { (i, exchange(addr, &request).await) });
    }
    while let Some(done) = running.join_next().await {
        let (j, reply) = done.expect("a case task panicked");
        replies[j] = Some(reply);
    }
    replies.into_iter().map(|r| r.expect("every case ran")).collect()
}

fn fuzz_overrides() -> ProxyOverrides {
    ProxyOverrides {
        request_head_timeout: Some(HEAD_TIMEOUT.into()),
        upstream_timeout: Some(UPSTREAM_TIMEOUT.into()),
        // The case number must reach the app; x-hop is forwarded unless Connection names it,
        // which the fuzz checks (only the allowlist and these pass at all).
        forward_headers: vec!["x-fuzz-case".into(), "x-hop".into()],
        // Every case may be in flight at once; a 503 for being over the limit is not what
        // the fuzz looks for.
        max_in_flight: Some(PARALLEL as u64),
        max_connections: Some(PARALLEL as u64 * 2),
        ..Default::default()
    }
}

/// Waits (briefly) for the sidecar's own gauge of requests in flight to return to zero.
async fn in_flight_drains(sidecar: SocketAddr) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..50 {
        let metrics = get(sidecar, "/-/metrics", "").await.text();
        last = metrics
            .lines()
            .find(|l| l.starts_with("meshscrape_proxy_in_flight_requests "))
            .unwrap_or("")
            .to_string();
        if last == "meshscrape_proxy_in_flight_requests 0" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

const FORWARDED_NEVER: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
];

#[tokio::test]
async fn mangled_request_heads_get_bounded_answers_and_only_configured_targets_reach_the_app() {
    let up = Upstream::start(Script::Body("fuzz_up 1\n")).await;
    let sidecar = Sidecar::to_with(up.addr, &["/metrics=/m"], fuzz_overrides()).await;
    let corpus: &[&[u8]] = &[
        b"GET /metrics?name[]=a&x=%20 HTTP/1.1\r\nHost: pod:9090\r\nAccept: \
            text/plain;version=0.0.4\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\nConnection: close\r\n\r\n",
        b"HEAD /metrics HTTP/1.1\r\nHost: a\r\nConnection: close, x-hop\r\nx-hop: \
            1\r\nKeep-Alive: timeout=5\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\nConnection: \
            close\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: \
            close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET /-/metrics HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic eA==\r\nTE: \
            trailers\r\nConnection: close\r\n\r\n",
        b"GET /metrics HTTP/1.0\r\n\r\n",
    ];
    let seed = seed();
    let mut rng = Rng(seed);
    let total = cases(1500);
    let mut failures = Vec::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    // The case number rides in a field of its own, so what the app saw can be matched to what
    // was sent (unless a mutation broke the field).
    let sent: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            let mut request = mutated(&mut rng, corpus);
            if let Some(eol) = request.windows(2).position(|w| w == b"\r\n") {
                request.splice(eol..eol, format!("\r\nx-fuzz-case: {i}").into_bytes());
            }
            request
        })
        .collect();
    let replies = exchange_all(sidecar.addr, &sent).await;
    for (i, (request, reply)) in sent.iter().zip(replies).enumerate() {
        let Ok(reply) = reply else {
            failures.push(format!(
                "case {i}: no answer and no close within {CASE_BOUND:?}: {}",
                shown(request)
            ));
            continue;
        };
        let Some(first) = parse_reply(&reply) else {
            // Closing without a word is the answer to a head that never completes (at the head
            // timeout), and only to that: every head that ends gets a status.
            let ends = request.windows(4).any(|w| w == b"\r\n\r\n")
                || request.windows(2).any(|w| w == b"\n\n")
                || request.windows(3).any(|w| w == b"\n\r\n");
            if !reply.is_empty() || ends {
                failures.push(format!(
                    "case {i}: unparseable or no reply {} to {}",
                    shown(&reply),
                    shown(request)
                ));
            }
            continue;
        };
        *statuses.entry(first.status).or_default() += 1;
        if ![200, 400, 404, 405, 431, 503].contains(&first.status) {
            failures.push(format!("case {i}: status {} to {}", first.status, shown(request)));
        }
        let body = String::from_utf8_lossy(&first.body);
        // Servers skip empty lines before a request line (RFC 9112 §2.2).
        let line_start = request.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(0);
        let is_head = request[line_start..].starts_with(b"HEAD ");
        if first.status >= 400
            && !is_head
            && !(body.ends_with('\n') && body.trim_end().lines().count() == 1)
        {
            failures.push(format!(
                "case {i}: {} without a one-line reason ({body:?}) to {}",
                first.status,
                shown(request)
            ));
        }
        let own_endpoint = request.windows(3).any(|w| w == b"/-/");
        if first.status == 200 && !is_head && !own_endpoint && body != "fuzz_up 1\n" {
            failures.push(format!(
                "case {i}: 200 with an unexpected body {body:?} to {}",
                shown(request)
            ));
        }
    }
    for head in up.heads() {
        let line = head.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (method, target, version) = (parts.next(), parts.next().unwrap_or(""), parts.next());
        let path = target.split('?').next();
        if !matches!(method, Some("GET" | "HEAD"))
            || path != Some("/m")
            || version != Some("HTTP/1.1")
            || parts.next().is_some()
        {
            failures.push(format!("the app saw the request line {line:?}"));
        }
        let fields: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        for (field, _) in &fields {
            if FORWARDED_NEVER.contains(&field.as_str()) {
                failures.push(format!("the app saw the field {field:?} in {head:?}"));
            }
        }
        let case = fields
            .iter()
            .find(|(k, _)| k == "x-fuzz-case")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        if let Some(request) = case.and_then(|i| sent.get(i))
            && connection_names_x_hop(request)
            && fields.iter().any(|(k, _)| k == "x-hop")
        {
            failures.push(format!(
                "the app saw x-hop, which Connection named, in {head:?} for {}",
                shown(request)
            ));
        }
    }
    if let Err(gauge) = in_flight_drains(sidecar.addr).await {
        failures.push(format!("requests still counted in flight: {gauge}"));
    }
    let after = get(sidecar.addr, "/metrics", "").await;
    assert_eq!(
        (after.status, after.text().as_str()),
        (200, "fuzz_up 1\n"),
        "the sidecar no longer serves a scrape (seed {seed})"
    );
    assert!(
        failures.is_empty(),
        "seed {seed}, {} of {total} cases failed (replay with MESHSCRAPE_FUZZ_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("seed {seed}: statuses {statuses:?}, {} requests reached the app", up.heads().len());
    // The run must have exercised more than one outcome, or the mutations are not reaching the parser.
    assert!(
        statuses.len() >= 4 && up.heads().len() >= total / 20,
        "too little variety: {statuses:?}, {} forwarded",
        up.heads().len()
    );
}

#[tokio::test]
async fn mangled_app_responses_become_502_504_or_pass_through_in_bounded_time() {
    let corpus: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \
            12\r\n\r\nfuzz_app 1\n\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: \
            x-t\r\n\r\n6\r\nup 1\n\n\r\n0\r\nx-t: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: \
            timeout=5\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\nContent-Length: 5\r\n\r\nup 1\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nup 1\nup 2\n",
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nup 1\n",
    ];
    let seed = seed();
    let mut rng = Rng(seed ^ 0x5eed);
    let total = cases(2000);
    let responses: Vec<Vec<u8>> = (0..total).map(|_| mutated(&mut rng, corpus)).collect();
    let responses = Arc::new(responses);
    let app = Upstream::start(Script::ByCase(responses.clone())).await;
    let sidecar = Sidecar::to_with(app.addr, &["/metrics=/m"], fuzz_overrides()).await;
    let mut failures = Vec::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let requests: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            format!(
                "GET /metrics HTTP/1.1\r\nHost: a\r\nx-fuzz-case: {i}\r\nConnection: close\r\n\r\n"
            )
            .into_bytes()
        })
        .collect();
    let replies = exchange_all(sidecar.addr, &requests).await;
    for (i, (sent, reply)) in responses.iter().zip(replies).enumerate() {
        let mut fail =
            |why: String| failures.push(format!("case {i}: {why}; the app sent {}", shown(sent)));
        let Ok(reply) = reply else {
            fail(format!("no answer and no close within {CASE_BOUND:?}"));
            continue;
        };
        let Some(first) = parse_reply(&reply) else {
            fail(format!("unparseable reply {}", shown(&reply)));
            continue;
        };
        *statuses.entry(first.status).or_default() += 1;
        // The app's bytes hold a status line with this code (1xx heads come first and are skipped).
        let from_app = sent.windows(12).any(|w| {
            w.starts_with(b"HTTP/1.")
                && w[8] == b' '
                && w[9..] == *first.status.to_string().as_bytes()
        });
        if !(first.status == 502 || first.status == 504 || from_app) {
            fail(format!("status {} is neither 502, 504 nor the app's", first.status));
        }
        if first.status == 502 || first.status == 504 {
            let body = String::from_utf8_lossy(&first.body);
            if !(body.ends_with('\n') && body.trim_end().lines().count() == 1) {
                fail(format!("{} without a one-line reason: {body:?}", first.status));
            }
        }
        for field in
            ["keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer", "upgrade"]
        {
            if first.header(field).is_some() {
                fail(format!("the hop-by-hop field {field:?} reached the client"));
            }
        }
        if connection_names_x_hop(sent) && first.header("x-hop").is_some() {
            fail("x-hop, which the app's Connection named, reached the client".into());
        }
    }
    if let Err(gauge) = in_flight_drains(sidecar.addr).await {
        failures.push(format!("requests still counted in flight: {gauge}"));
    }
    let healthy = get(sidecar.addr, "/-/healthy", "").await;
    assert_eq!(healthy.status, 200, "the sidecar stopped answering (seed {seed})");
    assert!(
        failures.is_empty(),
        "seed {seed}, {} of {total} cases failed (replay with MESHSCRAPE_FUZZ_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("seed {seed}: statuses {statuses:?}");
    assert!(statuses.len() >= 3 && statuses.contains_key(&502), "too little variety: {statuses:?}");
}
