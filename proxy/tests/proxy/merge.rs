//! Merged routes: several targets, one exposition in one format, failed targets left out and
//! reported.

use std::sync::Arc;
use std::time::Duration;

use meshscrape_common::ProxyOverrides;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::support::{Script, Sidecar, Upstream, exposition, get};

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OM: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_3_ACCEPT: &str = "Accept: application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\n";

/// A response with this Content-Type and body, then close.
fn answer(content_type: &str, body: &str) -> Script {
    let bytes = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Script::Raw(Box::leak(bytes.into_bytes().into_boxed_slice()))
}

/// An upstream that answers like `script` for OpenMetrics requests and with text otherwise, as
/// client libraries negotiate.
async fn negotiating(om_body: &'static str, text_body: &'static str) -> Upstream {
    let om = answer(OM, om_body);
    let text = answer(TEXT, text_body);
    let (Script::Raw(om), Script::Raw(text)) = (om, text) else { unreachable!() };
    // Requests carry x-fuzz-case only in the fuzz tests; here the case is picked by Accept, so
    // answer both with a small server of our own.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                seen.lock().unwrap().push(head.clone());
                let accept = head.lines().find_map(|l| l.strip_prefix("accept:")).unwrap_or("");
                let reply = if accept.contains("openmetrics") { om } else { text };
                let _ = s.write_all(reply).await;
            });
        }
    });
    Upstream { addr, heads, accepted: Arc::default() }
}

fn merged(sidecar_routes: &[String]) -> ProxyOverrides {
    ProxyOverrides { routes: sidecar_routes.to_vec(), ..Default::default() }
}

fn route(ups: &[&Upstream]) -> String {
    let targets: Vec<String> = ups.iter().map(|u| format!("http://{}/metrics", u.addr)).collect();
    format!("/metrics={}", targets.join("|"))
}

#[tokio::test]
async fn text_targets_are_joined_in_order_with_their_up_series() {
    let a = Upstream::start(Script::Body("a_total 1\n")).await;
    let b = Upstream::start(answer(TEXT, "# TYPE b gauge\nb 2")).await; // no final newline
    let sidecar = Sidecar::start(merged(&[route(&[&a, &b])])).await;
    let reply = get(sidecar.addr, "/metrics", PROMETHEUS_3_ACCEPT).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type").unwrap(), "text/plain; version=0.0.4");
    let up = |addr| format!("meshscrape_merge_target_up{{target=\"http://{addr}/metrics\"}} 1");
    let body = reply.text();
    assert!(
        body.starts_with("a_total 1\n# TYPE b gauge\nb 2\n# HELP meshscrape_merge_target_up"),
        "{body}"
    );
    assert!(body.ends_with(&format!("{}\n{}\n", up(a.addr), up(b.addr))), "{body}");
    // Parts must arrive as they are, to be joined: no compression asked of them.
    assert!(a.heads().iter().all(|h| !h.to_ascii_lowercase().contains("accept-encoding")));
}

#[tokio::test]
async fn every_target_is_asked_at_once() {
    // The first target answers only once the second has been asked: a merge that asked them one
    // after the other would wait for the first until its deadline.
    let asked = Arc::new(Notify::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first = listener.local_addr().unwrap();
    let notified = asked.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        notified.notified().await;
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\na 1\n",
            )
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        asked.notify_one();
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nb 2\n",
            )
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let sidecar = Sidecar::start(ProxyOverrides {
        routes: vec![format!("/m=http://{first}/m|http://{second}/m")],
        upstream_timeout: Some("3s".into()),
        ..Default::default()
    })
    .await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().starts_with("a 1\nb 2\n"), "{}", reply.text());
}

#[tokio::test]
async fn openmetrics_targets_keep_one_eof_at_the_very_end() {
    // The first target's `# EOF` arrives split over frames, 50 ms apart: held back, then dropped.
    let a = Upstream::start(Script::Paced(&[
        b"HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"11\r\n# TYPE a counter\n\r\n",
        b"a\r\na_total 1\n\r\n",
        b"3\r\n# E\r\n",
        b"3\r\nOF\n\r\n",
        b"0\r\n\r\n",
    ]))
    .await;
    let b = Upstream::start(answer(OM, "# TYPE b gauge\nb 2\n# EOF\n")).await;
    let sidecar = Sidecar::start(merged(&[route(&[&a, &b])])).await;
    let reply = get(sidecar.addr, "/metrics", PROMETHEUS_3_ACCEPT).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type").unwrap(), OM);
    let body = reply.text();
    assert!(body.starts_with("# TYPE a counter\na_total 1\n# TYPE b gauge\nb 2\n# HELP"), "{body}");
    assert_eq!(body.matches("# EOF").count(), 1, "{body}");
    assert!(body.ends_with("} 1\n# EOF\n"), "{body}");
}

#[tokio::test]
async fn targets_that_disagree_on_the_format_are_asked_again_for_text() {
    // One speaks OpenMetrics when asked; the other only ever writes JSON, and is left out.
    let om =
        negotiating("# TYPE a counter\na_total 1\n# EOF\n", "# TYPE a_total counter\na_total 1\n")
            .await;
    let text = Upstream::start(answer(TEXT, "b 2\n")).await;
    let json = Upstream::start(answer("application/json", "{\"b\": 2}")).await;
    let sidecar = Sidecar::start(merged(&[route(&[&om, &text, &json])])).await;
    let reply = get(sidecar.addr, "/metrics", PROMETHEUS_3_ACCEPT).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type").unwrap(), TEXT);
    let body = reply.text();
    assert!(body.starts_with("# TYPE a_total counter\na_total 1\nb 2\n"), "{body}");
    assert!(!body.contains("EOF") && !body.contains("\"b\": 2"), "{body}");
    assert!(body.contains(&format!("{{target=\"http://{}/metrics\"}} 0", json.addr)), "{body}");
    let heads = om.heads();
    assert_eq!(heads.len(), 2, "asked once as the scrape asked, once for text: {heads:?}");
    assert!(heads[1].contains("accept: text/plain;version=0.0.4"), "{}", heads[1]);
    let failed = format!(
        "meshscrape_proxy_merge_target_failures_total{{route=\"/metrics\",target=\"http://{}/metrics\",reason=\"format\"}}",
        json.addr
    );
    assert_eq!(sidecar.metric(&failed), 1.0);
}

#[tokio::test]
async fn a_failed_target_is_left_out_and_counted_and_the_scrape_goes_on() {
    let ok = Upstream::start(Script::Body("ok 1\n")).await;
    let broken = Upstream::start(Script::Raw(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
    ))
    .await;
    let hung = Upstream::start(Script::Hang).await;
    // Bound, never listening: connecting is refused, and no other test can take the port.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused = socket.local_addr().unwrap();
    let sidecar = Sidecar::start(ProxyOverrides {
        routes: vec![format!(
            "/metrics=http://{}/metrics|http://{}/metrics|http://{}/metrics|http://{refused}/metrics",
            ok.addr, broken.addr, hung.addr
        )],
        ..Default::default()
    })
    .await;
    let reply = get(sidecar.addr, "/metrics", "X-Prometheus-Scrape-Timeout-Seconds: 1\r\n").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.text();
    assert!(body.starts_with("ok 1\n# HELP"), "{body}");
    for (addr, up) in [(ok.addr, 1), (broken.addr, 0), (hung.addr, 0), (refused, 0)] {
        let line = format!("meshscrape_merge_target_up{{target=\"http://{addr}/metrics\"}} {up}");
        assert!(body.contains(&line), "missing {line} in:\n{body}");
    }
    for (addr, reason) in [(broken.addr, "status"), (hung.addr, "timeout"), (refused, "connect")] {
        let series = format!(
            "meshscrape_proxy_merge_target_failures_total{{route=\"/metrics\",target=\"http://{addr}/metrics\",reason=\"{reason}\"}}"
        );
        assert_eq!(sidecar.metric(&series), 1.0, "{series}");
    }
    let up = format!(
        "meshscrape_proxy_merge_target_up{{route=\"/metrics\",target=\"http://{}/metrics\"}}",
        ok.addr
    );
    assert_eq!(sidecar.metric(&up), 1.0);
}

#[tokio::test]
async fn when_every_target_fails_the_scrape_fails_and_says_why() {
    let broken = Upstream::start(Script::Raw(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    ))
    .await;
    let garbage = Upstream::start(Script::Garbage).await;
    let sidecar = Sidecar::start(merged(&[route(&[&broken, &garbage])])).await;
    let reply = get(sidecar.addr, "/metrics", "").await;
    assert_eq!(reply.status, 502);
    let text = reply.text();
    assert!(text.starts_with("every target of this merged route failed"), "{text}");
    assert!(text.contains(&format!("http://{}/metrics: status", broken.addr)), "{text}");
    assert!(text.contains(&format!("http://{}/metrics: protocol", garbage.addr)), "{text}");
}

#[tokio::test]
async fn a_part_over_the_byte_cap_is_left_out_or_cuts_the_scrape_once_streaming() {
    let small = Upstream::start(Script::Body("small 1\n")).await;
    let announced = Upstream::start(Script::Large(64 * 1024)).await; // Content-Length over the cap
    let sidecar = Sidecar::start(ProxyOverrides {
        routes: vec![route(&[&small, &announced])],
        max_part_bytes: Some(16 * 1024),
        ..Default::default()
    })
    .await;
    let reply = get(sidecar.addr, "/metrics", "").await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains(&format!("target=\"http://{}/metrics\"}} 0", announced.addr)));

    // Without a length the cap is found mid-stream, after the head went out: the response is cut,
    // so Prometheus fails the scrape rather than storing a part cut short.
    let piece: &'static [u8] =
        Box::leak(format!("4000\r\n{}\r\n", exposition(0x4000)).into_bytes().into_boxed_slice());
    let unannounced = Upstream::start(Script::Paced(Box::leak(Box::new([
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        piece,
        piece,
        b"0\r\n\r\n",
    ]))))
    .await;
    let sidecar = Sidecar::start(ProxyOverrides {
        routes: vec![route(&[&unannounced, &small])],
        max_part_bytes: Some(20 * 1024),
        ..Default::default()
    })
    .await;
    let reply = get(sidecar.addr, "/metrics", "").await;
    assert_eq!(reply.status, 200, "the head went out with the first 16 KiB");
    assert!(!reply.text().contains("small 1"), "cut before the next part");
    assert!(!reply.text().contains("meshscrape_merge_target_up"));
}

#[tokio::test]
async fn a_merged_scrape_takes_an_in_flight_slot_per_target() {
    let a = Upstream::start(Script::Slow(Duration::from_millis(500), "a 1\n")).await;
    let b = Upstream::start(Script::Body("b 1\n")).await;
    let solo = Upstream::start(Script::Body("solo 1\n")).await;
    let sidecar = Sidecar::start(ProxyOverrides {
        routes: vec![route(&[&a, &b]), format!("/solo=http://{}/metrics", solo.addr)],
        max_in_flight: Some(2),
        ..Default::default()
    })
    .await;
    let addr = sidecar.addr;
    let merged = tokio::spawn(async move { get(addr, "/metrics", "").await });
    // Wait until the merged scrape holds both slots (the slow target has its request).
    while a.heads().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let solo_reply = get(sidecar.addr, "/solo", "").await;
    assert_eq!(solo_reply.status, 503, "{}", solo_reply.text());
    assert_eq!(merged.await.unwrap().status, 200);
    assert_eq!(get(sidecar.addr, "/solo", "").await.status, 200, "the slots are free again");
}

#[tokio::test]
async fn head_answers_with_the_merged_type_and_no_body() {
    let a = Upstream::start(Script::Body("a 1\n")).await;
    let b = Upstream::start(Script::Body("b 1\n")).await;
    let sidecar = Sidecar::start(merged(&[route(&[&a, &b])])).await;
    let reply = super::support::raw(
        sidecar.addr,
        b"HEAD /metrics HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type").unwrap(), "text/plain; version=0.0.4");
    assert!(a.heads()[0].starts_with("HEAD /metrics"), "{:?}", a.heads());
}
