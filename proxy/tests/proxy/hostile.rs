//! Hostile clients and broken apps: each gets the contract's status and a one-line reason, and
//! nothing outside the route table ever reaches the app.

use std::time::Duration;

use meshscrape_common::ProxyOverrides;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::support::{Script, Sidecar, Upstream, get, metric, raw, raw_in_pieces};

fn one_line(body: &str) -> bool {
    body.ends_with('\n') && body.trim_end().lines().count() == 1
}

#[tokio::test]
async fn path_tricks_never_reach_the_app() {
    let up = Upstream::start(Script::Body("secret 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/prometheus=/prometheus"]).await;
    for target in [
        "/prometheus/../admin",
        "/prometheus/",
        "//prometheus",
        "/%70rometheus",
        "/prometheus%2F..%2Fadmin",
        "/PROMETHEUS",
        "/prometheus;x=1",
        "/./prometheus",
        "/-/../prometheus",
    ] {
        let reply = get(sidecar.addr, target, "").await;
        assert_eq!(reply.status, 404, "{target}");
        assert!(one_line(&reply.text()), "{target}: {:?}", reply.text());
    }
    // Absolute form, with our own upstream's address as the authority.
    let req = format!(
        "GET http://{}/prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        up.addr
    );
    assert_eq!(raw(sidecar.addr, req.as_bytes()).await.unwrap().status, 400);
    // CONNECT (authority-form) and OPTIONS * (asterisk-form).
    let reply = raw(sidecar.addr, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow").as_deref(), Some("GET, HEAD"));
    let reply = raw(sidecar.addr, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(reply.status, 405);
    assert!(up.heads().is_empty(), "reached the app: {:?}", up.heads());
}

#[tokio::test]
async fn malformed_heads_get_400_and_are_not_forwarded() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    for req in [
        &b"GET /m HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"[..],
        b"GET /m HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /m HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /m\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 this is a TLS hello\r\n\r\n",
        b"GET /m HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let reply = raw(sidecar.addr, req)
            .await
            .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(req)));
        assert_eq!(reply.status, 400, "{:?} -> {reply:?}", String::from_utf8_lossy(req));
        assert!(
            one_line(&reply.text())
                && reply.text().starts_with("the request head is not valid HTTP/1.1"),
            "{reply:?}"
        );
        assert_eq!(reply.header("content-type").as_deref(), Some("text/plain; charset=utf-8"));
    }
    assert!(up.heads().is_empty(), "reached the app: {:?}", up.heads());
}

#[tokio::test]
async fn an_http2_preface_is_closed_at_once_and_never_forwarded() {
    // An HTTP/2 client with prior knowledge could not read an HTTP/1 400, so hyper closes
    // without one (and the sidecar logs the reason); the point is that it ends at once.
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let started = Instant::now();
    let reply = raw(sidecar.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(reply.is_none(), "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "closed after {:?}", started.elapsed());
    assert!(up.heads().is_empty());
}

#[tokio::test]
async fn content_length_with_transfer_encoding_closes_the_connection() {
    // RFC 9112 §6.1: hyper frames by Transfer-Encoding alone and closes after responding, so
    // nothing after the chunked body can be read as a second request.
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let req = b"GET /m HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: \
            chunked\r\n\r\n0\r\n\r\nGET /-/metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let reply = raw(sidecar.addr, req).await.expect("an answer");
    assert_eq!(reply.header("connection").as_deref(), Some("close"));
    assert_eq!(
        reply.text(),
        "x 1\n",
        "exactly one response, no second one for the trailing request"
    );
    let heads = up.heads();
    assert_eq!(heads.len(), 1);
    let lower = heads[0].to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding") && !lower.contains("content-length"), "{lower}");
}

#[tokio::test]
async fn request_bodies_and_framing_headers_are_never_forwarded() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    // A GET carrying a body that looks like a second request: the body is not a request, and the
    // app sees one clean GET with no framing headers that would make it wait for a body.
    let smuggle = b"GET /m HTTP/1.1\r\nHost: x\r\nContent-Length: 33\r\nExpect: \
        100-continue\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    s.write_all(smuggle).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let heads = up.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let lower = heads[0].to_ascii_lowercase();
    assert!(!lower.contains("content-length") && !lower.contains("expect"), "{lower}");
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let big = format!("GET /m HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let reply = raw(sidecar.addr, big.as_bytes()).await.expect("an answer");
    assert_eq!(reply.status, 431);
    assert!(
        one_line(&reply.text())
            && reply.text().contains("over 8192 bytes (limits.maxRequestHeadBytes)"),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-length"), Some(reply.body.len().to_string()));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = raw(sidecar.addr, format!("GET /m HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes())
        .await
        .expect("an answer");
    assert_eq!(reply.status, 431, "{reply:?}");
    assert!(
        one_line(&reply.text()) && reply.text().contains("over 100 header fields"),
        "{reply:?}"
    );
    assert!(up.heads().is_empty());
}

#[tokio::test]
async fn a_raised_head_limit_admits_heads_larger_than_the_write_queue() {
    // The connection's buffer cap (64 KiB) must not undercut a limit set above it.
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides {
            max_request_head_bytes: Some(128 * 1024),
            forward_headers: vec!["x-big".into()],
            ..Default::default()
        },
    )
    .await;
    let value = "a".repeat(100 * 1024);
    let request =
        format!("GET /m HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {value}\r\n\r\n");
    // In pieces, so the sidecar sees the head grow past 64 KiB before it is complete.
    let reply = raw_in_pieces(sidecar.addr, request.as_bytes(), 8 * 1024).await.expect("an answer");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(up.heads()[0].contains(&value), "the header reached the app whole");
}

#[tokio::test]
async fn an_apps_own_bare_400_passes_untouched() {
    // Forwarded with the client's Connection: close, the app's answer has exactly the shape of
    // hyper's automatic one; it is the app's, so it keeps its empty body.
    let up = Upstream::start(Script::Raw(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
        .await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.head.contains("connection: close\r\ncontent-length: 0\r\n"),
        "the shape this test is about: {reply:?}"
    );
    assert_eq!(reply.text(), "", "{reply:?}");
    assert_eq!(up.heads().len(), 1);
}

#[tokio::test]
async fn a_body_frame_shaped_like_hyper_s_rejection_is_forwarded_untouched() {
    // The rejection seam sits under every byte written; a body frame that is exactly a bare
    // automatic 400 head must still go out as the app sent it, not be rewritten with a reason.
    const FRAME: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 79\r\n\r\n";
    assert_eq!(4 + FRAME.len(), 79);
    let up = Upstream::start(Script::Paced(&[HEAD, b"x 1\n", FRAME])).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, [&b"x 1\n"[..], FRAME].concat(), "{reply:?}");
}

#[tokio::test]
async fn a_bad_head_after_good_requests_on_one_connection_gets_its_reason() {
    // Two pipelined scrapes, then garbage: the app's answers pass untouched, and the garbage gets
    // hyper's 400 with our one-line body.
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
    s.write_all(
        b"GET /m HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /m \
        HTTP/1.1\r\nBad Header\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    let replies: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(replies.len(), 3, "{text}");
    assert!(replies[0].starts_with("200") && replies[0].ends_with("\r\n\r\nx 1\n"), "{text}");
    assert!(
        replies[1].starts_with("404")
            && replies[1].ends_with("only the configured exact paths are forwarded\n"),
        "{text}"
    );
    assert!(
        replies[2].starts_with("400") && replies[2].ends_with("Content-Length/Transfer-Encoding\n"),
        "{text}"
    );
}

/// `n` clients that connect and trickle a request head a byte every 100 ms, never finishing it.
async fn trickling_crowd(addr: std::net::SocketAddr, n: usize) -> tokio::task::JoinHandle<()> {
    let mut crowd = Vec::new();
    for _ in 0..n {
        crowd.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::spawn(async move {
        let head = b"GET /m HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for i in 0.. {
            for s in &mut crowd {
                // Evicted or timed-out clients get an error here; the rest keep trickling.
                let _ = s.write_all(&[head[i % head.len()]]).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test]
async fn a_crowd_of_slow_clients_beyond_the_connection_limit_does_not_delay_a_scrape() {
    // The head deadline is long on purpose: a scrape that had to wait for slow clients' slots
    // to time out would wait 60 s, so the bound below can only hold if crowding clients give up
    // their slots to it.
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides {
            request_head_timeout: Some("60s".into()),
            max_connections: Some(50),
            ..Default::default()
        },
    )
    .await;
    // Six times the limit, connected and trickling before the scrape arrives: by the time the
    // sidecar has shed 250 of them, it has accepted them all and every slot is the crowd's.
    let crowd = trickling_crowd(sidecar.addr, 300).await;
    let started = Instant::now();
    while sidecar.shed_crowded() < 250.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the crowd never filled the slots");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for round in 0..5 {
        let reply = tokio::time::timeout(Duration::from_secs(10), get(sidecar.addr, "/m", ""))
            .await
            .unwrap_or_else(|_| panic!("scrape {round} waited behind the crowd"));
        assert_eq!(reply.status, 200);
    }
    assert_eq!(up.heads().len(), 5, "no trickled head reached the app");
    let metrics = get(sidecar.addr, "/-/metrics", "").await.text();
    let shed = metric(&metrics, "meshscrape_proxy_connections_shed_total{reason=\"crowded\"}");
    // 300 crowding clients for 50 slots, plus a slot for each scrape and the metrics request.
    assert!(shed >= 250.0, "{metrics}");
    assert!(metric(&metrics, "meshscrape_proxy_open_connections") <= 50.0, "{metrics}");

    // The crowd leaves: the sidecar recovers fully (every slot free but the one asking).
    crowd.abort();
    let _ = crowd.await;
    let started = Instant::now();
    loop {
        let metrics = get(sidecar.addr, "/-/metrics", "").await.text();
        if metric(&metrics, "meshscrape_proxy_open_connections") == 1.0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "slots still held:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(sidecar.addr, "/m", "").await.status, 200);
}

#[tokio::test]
async fn a_client_slower_than_the_head_deadline_is_closed_and_counted() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides { request_head_timeout: Some("300ms".into()), ..Default::default() },
    )
    .await;
    let mut slow = TcpStream::connect(sidecar.addr).await.unwrap();
    slow.write_all(b"GET /m HTTP/1.1\r\nHo").await.unwrap();
    // Closed cleanly at the deadline: end of file, no answer, no reset.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("the slow client was not closed at its head deadline")
        .expect("a clean close, not a reset");
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    let started = Instant::now();
    loop {
        let metrics = get(sidecar.addr, "/-/metrics", "").await.text();
        let shed =
            metric(&metrics, "meshscrape_proxy_connections_shed_total{reason=\"head_timeout\"}");
        if shed == 1.0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not counted:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up.heads().is_empty());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_deadline_and_frees_its_slot() {
    // A 20 MB body to a client that reads nothing: once the socket buffers and the 64 KiB write
    // queue are full, hyper stops asking for body frames, so only a deadline on the whole
    // response can free the in-flight slot. Otherwise maxInFlight such clients starve every scrape.
    let up = Upstream::start(Script::Large(20_000_000)).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides {
            upstream_timeout: Some("2s".into()),
            max_in_flight: Some(2),
            ..Default::default()
        },
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(sidecar.addr).await.unwrap();
        s.write_all(b"GET /m HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        stalled.push(s);
    }
    // Both requests are at the app, so both slots are taken.
    let started = Instant::now();
    while up.heads().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "the stalled requests never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        get(sidecar.addr, "/m", "").await.status,
        503,
        "both slots are held while the clients stall"
    );
    let started = Instant::now();
    loop {
        let metrics = get(sidecar.addr, "/-/metrics", "").await.text();
        if metrics.contains("meshscrape_proxy_in_flight_requests 0\n") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stalled clients still hold their slots:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(sidecar.addr, "/m", "").await.status, 200, "a real scrape gets a slot again");
    // The connection was closed: draining it ends in EOF, short of 20 MB.
    let mut got = Vec::new();
    // Cut, not finished: an end of file or a reset both mean the sidecar closed it.
    let _ = tokio::time::timeout(Duration::from_secs(5), stalled[0].read_to_end(&mut got))
        .await
        .expect("the stalled connection was closed");
    assert!(got.len() < 20_000_000, "a truncated body, not a complete one");
}

#[tokio::test]
async fn a_client_that_pipelines_without_reading_does_not_hold_its_connection_slot() {
    // The sidecar's own short answers carry no upstream deadline; thousands of them pipelined and
    // never read still fill the socket, and the connection must not be held for ever. At the
    // connection limit a new client would take its slot (see the test below); this one asserts
    // the write deadline closes it anyway, with no other client arriving.
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides {
            request_head_timeout: Some("300ms".into()),
            max_connections: Some(1),
            ..Default::default()
        },
    )
    .await;
    let mut flood = TcpStream::connect(sidecar.addr).await.unwrap();
    let requests = b"GET /no-such-path HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100_000);
    let writer = tokio::spawn(async move {
        // Blocks once the sidecar stops reading; ends when the sidecar closes the connection.
        let _ = flood.write_all(&requests).await;
        flood
    });
    // The flood holds the only slot once the sidecar has answered some of it (404s); read
    // without a connection, which would take the flood's slot.
    let started = Instant::now();
    while sidecar.metric("meshscrape_proxy_requests_total{route=\"unmatched\",status=\"404\"}")
        == 0.0
    {
        assert!(started.elapsed() < Duration::from_secs(5), "the flood never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The sidecar closes it once an answer has waited past the deadline, and counts the cut.
    let stalled = "meshscrape_proxy_connections_shed_total{reason=\"stalled_reader\"}";
    let started = Instant::now();
    while sidecar.metric(stalled) == 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the flooding connection was held past its write deadline"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sidecar.metric("meshscrape_proxy_open_connections"), 0.0);
    let reply = tokio::time::timeout(Duration::from_secs(10), get(sidecar.addr, "/m", ""))
        .await
        .expect("the scrape waited behind the flood");
    assert_eq!(reply.status, 200);
    writer.abort();
}

#[tokio::test]
async fn clients_that_pipeline_and_never_read_do_not_delay_a_scrape_at_the_connection_limit() {
    // Every slot held by a client that pipelines requests for the sidecar's own short answers and
    // reads none: its connection is not answering a request of its own between answers, so a
    // scrape takes its slot long before the 60 s head deadline could free one.
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides {
            request_head_timeout: Some("60s".into()),
            max_connections: Some(4),
            ..Default::default()
        },
    )
    .await;
    let requests = b"GET /no-such-path HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100_000);
    let mut writers = Vec::new();
    for _ in 0..4 {
        let mut flood = TcpStream::connect(sidecar.addr).await.unwrap();
        let requests = requests.clone();
        writers.push(tokio::spawn(async move {
            let _ = flood.write_all(&requests).await;
            flood
        }));
    }
    // All four are in and answered some of their requests before the scrape comes.
    let started = Instant::now();
    let series = "meshscrape_proxy_requests_total{route=\"unmatched\",status=\"404\"}";
    while sidecar.metric("meshscrape_proxy_open_connections") < 4.0 || sidecar.metric(series) < 4.0
    {
        assert!(started.elapsed() < Duration::from_secs(10), "the flood never filled the slots");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for round in 0..3 {
        let reply = tokio::time::timeout(Duration::from_secs(10), get(sidecar.addr, "/m", ""))
            .await
            .unwrap_or_else(|_| panic!("scrape {round} waited behind the pipelining clients"));
        assert_eq!(reply.status, 200);
    }
    for w in writers {
        w.abort();
    }
}

#[tokio::test]
async fn upstream_garbage_is_502() {
    let up = Upstream::start(Script::Garbage).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 502);
    assert!(
        one_line(&reply.text()) && reply.text().contains("not a valid HTTP/1 response"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn upstream_conflicting_lengths_is_502() {
    let up = Upstream::start(Script::ConflictingLength).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    assert_eq!(get(sidecar.addr, "/m", "").await.status, 502);
}

#[tokio::test]
async fn upstream_refusing_is_502() {
    // A port bound and held but not listening: connections to it are refused, and no other
    // process can take it while the test runs (a port bound and released could be).
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = closed.local_addr().unwrap().port();
    let sidecar = Sidecar::to(format!("127.0.0.1:{port}").parse().unwrap(), &["/m=/m"]).await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 502);
    assert!(reply.text().contains("refused"), "{}", reply.text());
}

#[tokio::test]
async fn hanging_upstream_is_504_at_the_scrape_deadline() {
    let up = Upstream::start(Script::Hang).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    // Configured timeout is 10 s; Prometheus's header asks for 1 s, so we answer at 750 ms.
    let started = Instant::now();
    let reply = get(sidecar.addr, "/m", "X-Prometheus-Scrape-Timeout-Seconds: 1\r\n").await;
    let took = started.elapsed();
    assert_eq!(reply.status, 504);
    assert!(reply.text().contains("did not answer within 750ms"), "{}", reply.text());
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn stalled_body_is_cut_at_the_deadline() {
    let up = Upstream::start(Script::StallBody).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides { upstream_timeout: Some("300ms".into()), ..Default::default() },
    )
    .await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 200, "the head had already gone out");
    assert!(reply.body.len() < 1000, "the client must see a truncated body, not a complete one");
    let metrics = get(sidecar.addr, "/-/metrics", "").await.text();
    assert!(
        metrics.contains("meshscrape_proxy_upstream_errors_total{kind=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_that_breaks_before_its_first_byte_is_502() {
    // The head promises 100 bytes; the app closes without sending any.
    let up = Upstream::start(Script::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")).await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(
        one_line(&reply.text()) && reply.text().contains("broken or truncated body"),
        "{}",
        reply.text()
    );
    let metrics = get(sidecar.addr, "/-/metrics", "").await.text();
    assert!(
        metrics.contains("meshscrape_proxy_upstream_errors_total{kind=\"body\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_head_with_no_body_by_the_deadline_is_504() {
    let up = Upstream::start(Script::HeadThenHang).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides { upstream_timeout: Some("300ms".into()), ..Default::default() },
    )
    .await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        one_line(&reply.text()) && reply.text().contains("no body within 300ms"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn an_apps_content_length_beside_transfer_encoding_is_dropped() {
    // RFC 9112 §6.3: chunked framing wins. Forwarding the stale Content-Length (3) would frame
    // the client's response wrongly; the whole six-byte body must arrive.
    let up = Upstream::start(Script::Raw(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \
            chunked\r\nContent-Length: 3\r\n\r\n6\r\nup 1\n\n\r\n0\r\n\r\n",
    ))
    .await;
    let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
    let reply = get(sidecar.addr, "/m", "").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "up 1\n\n"), "{reply:?}");
    assert_eq!(reply.header("content-length"), None, "{reply:?}");
}

#[tokio::test]
async fn over_the_in_flight_limit_is_503() {
    let up = Upstream::start(Script::Slow(Duration::from_millis(800), "x 1\n")).await;
    let sidecar = Sidecar::to_with(
        up.addr,
        &["/m=/m"],
        ProxyOverrides { max_in_flight: Some(1), ..Default::default() },
    )
    .await;
    let addr = sidecar.addr;
    let first = tokio::spawn(async move { get(addr, "/m", "").await });
    // Wait until the first request is at the app.
    while up.heads().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = get(addr, "/m", "").await;
    assert_eq!(second.status, 503);
    assert!(second.text().contains("limit 1"), "{}", second.text());
    assert_eq!(get(addr, "/-/healthy", "").await.status, 200, "own endpoints are not limited");
    let metrics = get(addr, "/-/metrics", "").await.text();
    assert!(metrics.contains("meshscrape_proxy_in_flight_requests 1\n"), "{metrics}");
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(get(addr, "/m", "").await.status, 200, "the slot is released when the body ends");
}

#[tokio::test]
async fn an_app_answering_a_plain_get_with_1xx_or_101_gets_the_client_a_502_every_time() {
    for answer in [
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
        b"HTTP/1.1 101 Switching Protocols\r\n\r\nup 1\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    ] {
        let up = Upstream::start(Script::Raw(answer)).await;
        let sidecar = Sidecar::to(up.addr, &["/m=/m"]).await;
        for _ in 0..20 {
            let reply = get(sidecar.addr, "/m", "").await;
            assert_eq!(reply.status, 502, "{}: {reply:?}", String::from_utf8_lossy(answer));
            assert!(one_line(&reply.text()), "{reply:?}");
        }
    }
}
