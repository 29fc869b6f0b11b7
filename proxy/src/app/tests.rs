use super::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use meshscrape_common::ProxyOverrides;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn app(routes: &[&str], upstream: &str) -> App {
    let overrides = ProxyOverrides {
        upstream: Some(upstream.into()),
        routes: routes.iter().map(|r| (*r).to_string()).collect(),
        ..Default::default()
    };
    App::new(&ProxyConfig::load(None, &overrides).unwrap()).unwrap()
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).unwrap()
}

async fn body_text(resp: Response<ProxyBody>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// An upstream that answers one request with `response` and hands back the request head it read.
async fn one_shot_upstream(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8(head).unwrap()
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn unknown_path_is_404_with_a_one_line_reason() {
    let app = app(&["/metrics=/metrics"], "http://127.0.0.1:1");
    let resp = app.handle(get("/metrics/")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = body_text(resp).await;
    assert_eq!(body.lines().count(), 1);
    assert!(body.contains("no route"));
}

#[tokio::test]
async fn rejects_post_with_405_and_allow() {
    let app = app(&["/metrics=/metrics"], "http://127.0.0.1:1");
    for method in
        [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS, Method::CONNECT, Method::TRACE]
    {
        let req = Request::builder()
            .method(method.clone())
            .uri("/metrics")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = app.handle(req).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
    }
}

#[tokio::test]
async fn rejects_absolute_form_targets() {
    let app = app(&["/metrics=/metrics"], "http://127.0.0.1:1");
    let resp = app.handle(get("http://evil.example/metrics")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(resp).await.contains("absolute-form"));
}

#[tokio::test]
async fn serves_its_own_health_ready_and_metrics() {
    let app = app(&["/metrics=/metrics"], "http://127.0.0.1:1");
    assert_eq!(app.handle(get("/-/healthy")).await.status(), StatusCode::OK);
    assert_eq!(app.handle(get("/-/ready")).await.status(), StatusCode::OK);
    app.handle(get("/nope")).await;
    let resp = app.handle(get("/-/metrics")).await;
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = body_text(resp).await;
    assert!(
        text.contains("meshscrape_proxy_requests_total{route=\"unmatched\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("meshscrape_proxy_requests_total{route=\"/-/ready\",status=\"200\"} 1"),
        "{text}"
    );
    app.start_draining();
    assert_eq!(app.handle(get("/-/ready")).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.handle(get("/-/healthy")).await.status(),
        StatusCode::OK,
        "still alive while draining"
    );
}

#[tokio::test]
async fn scrape_timeout_header_shortens_the_deadline() {
    let app = app(&["/m=/m"], "http://127.0.0.1:1");
    let with = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_str(v).unwrap());
        app.table().deadline(&h)
    };
    assert_eq!(app.table().deadline(&HeaderMap::new()), Duration::from_secs(10));
    assert_eq!(with("3"), Duration::from_millis(2750));
    assert_eq!(with("0.4"), Duration::from_millis(200));
    assert_eq!(with("60"), Duration::from_secs(10), "never longer than the configured timeout");
    for junk in ["-1", "NaN", "inf", "soon", "0"] {
        assert_eq!(with(junk), Duration::from_secs(10), "{junk}");
    }
}

#[tokio::test]
async fn forwards_to_the_target_path_with_query_and_rewritten_host() {
    let (upstream, seen) = one_shot_upstream(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: \
            text/plain\r\nX-App: 1\r\nKeep-Alive: timeout=9\r\n\r\nhello",
    )
    .await;
    let app = app(&["/metrics=/actuator/prometheus"], &upstream);
    let req = Request::get("/metrics?name[]=up&x=%20")
        .header("accept", "text/plain;version=0.0.4")
        .header("connection", "x-drop-me")
        .header("x-drop-me", "1")
        .header("host", "sidecar.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = app.handle(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-app"], "1");
    assert!(resp.headers().get("keep-alive").is_none(), "hop-by-hop stripped on the way back");
    assert_eq!(body_text(resp).await, "hello");
    let head = seen.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /actuator/prometheus?name[]=up&x=%20 http/1.1\r\n"), "{head}");
    assert!(head.contains("accept: text/plain;version=0.0.4"), "{head}");
    assert!(head.contains(&format!("host: {}", &upstream["http://".len()..])), "{head}");
    assert!(!head.contains("x-drop-me"), "{head}");
    assert!(!head.contains("sidecar.example"), "{head}");
}

#[tokio::test]
async fn refused_upstream_is_502_naming_the_cause() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let app = app(&["/m=/m"], &format!("http://127.0.0.1:{port}"));
    let resp = app.handle(get("/m")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body = body_text(resp).await;
    assert!(body.contains("refused"), "{body}");
    assert!(
        app.render_metrics().contains("meshscrape_proxy_upstream_errors_total{kind=\"connect\"} 1")
    );
}
