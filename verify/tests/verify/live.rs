//! `endpoint` and `prometheus` against loopback servers that misbehave in every way the issue
//! lists: each becomes a failed check with a reason, never a panic or a hang.

use std::io::Write as _;
use std::time::{Duration, Instant};

use meshscrape_verify::report::Status;
use meshscrape_verify::{endpoint, prometheus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `response` (raw bytes) to every connection, after reading the request head.
async fn serve(response: Vec<u8>, then_hang: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&response).await;
                if then_hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn ok(body: &str, content_type: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: \
        close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn opts() -> endpoint::Options {
    endpoint::Options {
        timeout: Duration::from_secs(2),
        max_bytes: 1 << 20,
        probes: vec![],
        ..Default::default()
    }
}

fn fail_message(report: &meshscrape_verify::report::Report) -> String {
    report
        .checks
        .iter()
        .find(|c| c.status == Status::Fail)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

const SEED: &str =
    "# TYPE x_isAlive summary\nx_isAlive{quantile=\"0.5\",} 1.353475E-4\nx_isAlive_count 50598.0\n";

#[tokio::test]
async fn a_good_exposition_passes_and_counts_families() {
    let url = serve(ok(SEED, "text/plain; version=0.0.4"), false).await;
    let r = endpoint::check(&format!("{url}/prometheus"), &opts()).await;
    assert!(!r.failed(), "{r:?}");
    assert!(r.checks.iter().any(|c| c.message == "1 families, 2 samples"), "{r:?}");
}

#[tokio::test]
async fn gzip_bodies_are_decoded() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(SEED.as_bytes()).unwrap();
    let body = gz.finish().unwrap();
    let mut resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: \
            {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    resp.extend(body);
    let r = endpoint::check(&serve(resp, false).await, &opts()).await;
    assert!(!r.failed(), "{r:?}");
}

#[tokio::test]
async fn bad_answers_fail_with_a_reason() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 23\r\nConnection: close\r\n\r\nno route for this path\n".to_vec(), "404 Not Found: no route"),
        (b"HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), "redirect to /login"),
        (ok("<html><body>Hello</body></html>", "text/html"), "received unsupported Content-Type \"text/html\""),
        (ok("<html><body>Hello</body></html>", "text/plain"), "Prometheus 3 would reject this body: line 1"),
        (b"\x16\x03\x01\x00\x2a\x02\x00\x00\x26\x03\x03garbage-tls-server-hello\r\n\r\n".to_vec(), "did not answer HTTP/1"),
        (ok("", "text/plain"), "no samples"),
    ];
    for (resp, needle) in cases {
        let r = endpoint::check(&serve(resp, false).await, &opts()).await;
        assert!(fail_message(&r).contains(needle), "want {needle:?}, got {r:?}");
    }
}

#[tokio::test]
async fn refused_https_oversized_and_endless_bodies_are_bounded() {
    // A port bound and held but not listening: connections to it are refused, and no other
    // process can take it while the test runs (a port bound and released could be).
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = closed.local_addr().unwrap().port();
    let r = endpoint::check(&format!("http://127.0.0.1:{port}/m"), &opts()).await;
    assert!(fail_message(&r).contains("cannot connect"), "{r:?}");
    let r = endpoint::check("https://127.0.0.1:1/m", &opts()).await;
    assert!(
        fail_message(&r).contains("give the CA that signed the sidecar's certificate (--ca-file)"),
        "{r:?}"
    );

    // 100 MB promised, 2 MB sent, cap 1 MiB: stops reading at the cap.
    let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'a', 2 << 20));
    let r = endpoint::check(&serve(big, true).await, &opts()).await;
    assert!(fail_message(&r).contains("larger than 1048576 bytes"), "{r:?}");

    // A body that never ends: the deadline ends the check.
    let started = Instant::now();
    let endless = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nup 1\n".to_vec();
    let r = endpoint::check(&serve(endless, true).await, &opts()).await;
    assert!(fail_message(&r).contains("no complete answer within 2s"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn probes_must_answer_200() {
    let url = serve(ok(SEED, "text/plain"), false).await;
    let o = endpoint::Options { probes: vec!["/readiness".into()], ..opts() };
    let r = endpoint::check(&format!("{url}/prometheus"), &o).await;
    assert!(
        r.checks.iter().any(|c| c.name == "probe"
            && c.status == Status::Pass
            && c.object.as_deref() == Some(&format!("{url}/readiness")[..])),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_prometheus_that_answers_html_is_a_clear_failure() {
    let url =
        serve(ok("<!doctype html><title>Grafana</title>", "text/html; charset=utf-8"), false).await;
    let o = prometheus::Options {
        job: Some("x".into()),
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let err = prometheus::check(&url, &o).await.unwrap_err().to_string();
    assert!(err.contains("not JSON; is --url the Prometheus server's base URL"), "{err}");
}

#[tokio::test]
async fn a_merged_scrape_fails_for_a_target_left_out_and_for_families_two_targets_share() {
    let body = "# TYPE go_goroutines gauge\ngo_goroutines 8\napp_requests_total 3\n\
        # TYPE go_goroutines gauge\ngo_goroutines 12\n\
        # HELP meshscrape_merge_target_up 1 if in.\n# TYPE meshscrape_merge_target_up gauge\n\
        meshscrape_merge_target_up{target=\"http://127.0.0.1:8080/metrics\"} 1\n\
        meshscrape_merge_target_up{target=\"http://127.0.0.1:9100/metrics\"} 0\n";
    let r =
        endpoint::check(&serve(ok(body, "text/plain; version=0.0.4"), false).await, &opts()).await;
    let failed: Vec<(&str, &str)> = r
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| (c.name.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("families", "1 families stand in more than one place: go_goroutines"),
            ("merged targets", "1 of 2 targets were left out: http://127.0.0.1:9100/metrics"),
        ],
        "{r:?}"
    );
    assert!(
        r.checks.iter().any(|c| c.fix.as_deref().is_some_and(|f| f.contains("process_ and go_")))
    );

    // Every target in, no family twice: passes, and says how many targets it saw.
    let body = "a 1\nb 2\nmeshscrape_merge_target_up{target=\"http://127.0.0.1:8080/m\"} 1\n\
        meshscrape_merge_target_up{target=\"http://127.0.0.1:9100/m\"} 1\n";
    let r = endpoint::check(&serve(ok(body, "text/plain"), false).await, &opts()).await;
    assert!(!r.failed(), "{r:?}");
    assert!(r.checks.iter().any(|c| c.message == "all 2 targets of the route are in the scrape"));
}
