//! What a well-behaved scrape sees through the sidecar.

use std::sync::atomic::Ordering;
use std::time::Duration;

use meshscrape_common::ProxyOverrides;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::{Script, Sidecar, Upstream, exposition, get, raw};

#[tokio::test]
async fn seed_default_routes_map_to_the_seed_paths() {
    let up = Upstream::start(Script::Body("up 1\n")).await;
    let sidecar = Sidecar::start(ProxyOverrides {
        upstream: Some(format!("http://{}", up.addr)),
        ..Default::default()
    })
    .await;
    for path in ["/", "/prometheus", "/readiness", "/liveness"] {
        let reply = get(sidecar.addr, path, "").await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.text(), "up 1\n");
    }
    let targets: Vec<String> =
        up.heads().iter().map(|h| h.split(' ').nth(1).unwrap().to_string()).collect();
    assert_eq!(targets, ["/prometheus", "/prometheus", "/ready", "/alive"]);
}

#[tokio::test]
async fn forwards_query_string_and_prometheus_headers() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/prometheus=/metrics"]).await;
    let reply = get(
        sidecar.addr,
        "/prometheus?collect[]=jvm&debug=true",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\nAccept-Encoding: gzip\r\n",
    )
    .await;
    assert_eq!(reply.status, 200);
    let head = up.heads().remove(0);
    assert!(head.starts_with("GET /metrics?collect[]=jvm&debug=true HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("accept: application/openmetrics-text"), "{head}");
    // The app is told the budget it gets: the 10 s scrape timeout less the sidecar's 250 ms.
    assert!(lower.contains("x-prometheus-scrape-timeout-seconds: 9.75\r\n"), "{head}");
    assert!(lower.contains("accept-encoding: gzip"), "{head}");
    assert!(!lower.contains("connection: close"), "hop-by-hop Connection stripped: {head}");
}

#[tokio::test]
async fn identity_and_other_client_headers_never_reach_the_app() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let forged = "X-Forwarded-Client-Cert: By=spiffe://cluster.local/ns/tools/sa/app;URI=spiffe://x\r\n\
                  X-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\n\
                  X-Envoy-Peer-Metadata: abc\r\nX-Envoy-Internal: true\r\nAuthorization: Bearer t\r\n\
                  Cookie: s=1\r\nX-Custom: 1\r\nUser-Agent: Prometheus/3.5.3\r\nAccept: text/plain\r\n";
    assert_eq!(get(sidecar.addr, "/m", forged).await.status, 200);
    let head = up.heads().remove(0).to_ascii_lowercase();
    let mut names: Vec<&str> =
        head.lines().skip(1).filter_map(|l| l.split_once(':')).map(|(n, _)| n).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["accept", "host", "user-agent", "x-prometheus-scrape-timeout-seconds"],
        "{head}"
    );
    // Without a scrape timeout from the client, the app is still told its budget: the
    // configured upstream timeout.
    assert!(head.contains("x-prometheus-scrape-timeout-seconds: 10\r\n"), "{head}");
}

#[tokio::test]
async fn headers_the_config_adds_are_forwarded_and_no_others() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let overrides =
        ProxyOverrides { forward_headers: vec!["X-Tenant".into()], ..Default::default() };
    let sidecar = Sidecar::to_with(up.addr, &["/m=/m"], overrides).await;
    let reply = get(sidecar.addr, "/m", "X-Tenant: a\r\nX-Tenant: b\r\nX-Other: c\r\n").await;
    assert_eq!(reply.status, 200);
    let head = up.heads().remove(0).to_ascii_lowercase();
    assert!(head.contains("x-tenant: a\r\nx-tenant: b\r\n"), "{head}");
    assert!(!head.contains("x-other"), "{head}");
}

#[tokio::test]
async fn head_is_forwarded_as_head_without_a_body() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let reply = raw(sidecar.addr, b"HEAD /m HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert!(up.heads()[0].starts_with("HEAD /m "));
}

#[tokio::test]
async fn streams_a_20_mb_body_byte_for_byte() {
    let n = 20_000_000;
    let up = Upstream::start(Script::Large(n)).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length").as_deref(), Some("20000000"));
    assert_eq!(reply.body.len(), n);
    let piece = exposition(64 * 1024);
    assert!(
        reply.body.chunks(piece.len()).all(|c| c == &piece.as_bytes()[..c.len()]),
        "body differs from what the app sent"
    );
    let metrics = get(sidecar.addr, "/-/metrics", "").await.text();
    assert!(
        metrics.contains("meshscrape_proxy_response_bytes_total{route=\"/m\"} 20000000"),
        "{metrics}"
    );
}

#[tokio::test]
async fn reuses_pooled_upstream_connections() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    for _ in 0..20 {
        assert_eq!(get(sidecar.addr, "/m", "").await.status, 200);
    }
    assert_eq!(up.heads().len(), 20);
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "sequential scrapes share one upstream connection"
    );
}

#[tokio::test]
async fn an_app_that_closes_pooled_connections_costs_no_failed_scrape() {
    let up = Upstream::start(Script::BodyThenClose("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    for i in 0..10 {
        assert_eq!(get(sidecar.addr, "/m", "").await.status, 200, "scrape {i}");
        // Between scrapes the app's close arrives; the pool must notice it, not hand it out.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 10, "each scrape needed a new connection");
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_by_the_sidecar() {
    use meshscrape_proxy::upstream::Pool;
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let pool = Pool::new(4, Duration::from_millis(100), 64 * 1024);
    let req = || {
        http::Request::builder()
            .uri("/m")
            .header("host", "app")
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    let resp = pool.request(up.addr, req(), Duration::from_secs(1)).await.unwrap();
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
    // Reused while fresh...
    tokio::task::yield_now().await;
    let resp = pool.request(up.addr, req(), Duration::from_secs(1)).await.unwrap();
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.pooled(up.addr), 1);
    // ...dropped once idle past the limit.
    tokio::time::sleep(Duration::from_millis(150)).await;
    pool.reap();
    assert_eq!(pool.pooled(up.addr), 0);
    let resp = pool.request(up.addr, req(), Duration::from_secs(1)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn serves_keep_alive_clients_several_requests() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    s.write_all(
        b"GET /m HTTP/1.1\r\nHost: s\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: s\r\n\r\nGET /m \
            HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_and_drains_completely() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let mut sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    // An idle keep-alive client after one request.
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    s.write_all(b"GET /m HTTP/1.1\r\nHost: s\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf).await.unwrap();
    sidecar.shutdown();
    let drain = tokio::time::timeout(std::time::Duration::from_secs(5), &mut sidecar.done)
        .await
        .expect("drained in time")
        .unwrap();
    assert_eq!(drain, meshscrape_proxy::server::Drain::Complete);
    let n = s.read(&mut buf).await.expect("the idle connection was closed cleanly, not reset");
    assert_eq!(n, 0, "the idle connection was closed");
    assert!(TcpStream::connect(sidecar.addr).await.is_err(), "no longer accepting");
}
