//! Test helpers: an in-process sidecar, scripted upstreams and a raw HTTP/1 client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshscrape_common::{ProxyConfig, ProxyOverrides};
use meshscrape_proxy::{App, server};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A sidecar served in this process on 127.0.0.1:0.
pub(crate) struct Sidecar {
    pub addr: SocketAddr,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<server::Drain>,
}

impl Sidecar {
    pub(crate) async fn start(overrides: ProxyOverrides) -> Sidecar {
        Sidecar::start_from(None, overrides).await
    }

    /// A sidecar configured by `file` (if any) and `overrides`, as the binary would be.
    pub(crate) async fn start_from(
        file: Option<&std::path::Path>,
        mut overrides: ProxyOverrides,
    ) -> Sidecar {
        overrides.listen.get_or_insert("127.0.0.1:0".into());
        let config = ProxyConfig::load(file, &overrides).expect("test config is valid");
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(App::new(&config).expect("the files the test config names are usable"));
        let (stop, stopped) = oneshot::channel();
        let served = app.clone();
        let done = tokio::spawn(async move {
            server::serve(listener, served, &config, async {
                let _ = stopped.await;
            })
            .await
        });
        Sidecar { addr, app, stop: Some(stop), done }
    }

    /// A sidecar whose routes all go to `upstream`.
    pub(crate) async fn to(upstream: SocketAddr, routes: &[&str]) -> Sidecar {
        Sidecar::to_with(upstream, routes, ProxyOverrides::default()).await
    }

    /// `to`, with the other settings taken from `overrides`.
    pub(crate) async fn to_with(
        upstream: SocketAddr,
        routes: &[&str],
        overrides: ProxyOverrides,
    ) -> Sidecar {
        Sidecar::start(ProxyOverrides {
            upstream: Some(format!("http://{upstream}")),
            routes: routes.iter().map(|r| (*r).to_string()).collect(),
            ..overrides
        })
        .await
    }

    /// The sidecar's handler, to reload it.
    pub(crate) fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Connections shed at the connection limit so far, read without a connection of its own.
    pub(crate) fn shed_crowded(&self) -> f64 {
        self.metric("meshscrape_proxy_connections_shed_total{reason=\"crowded\"}")
    }

    /// A sample of `/-/metrics`, read without a connection of its own; 0 for a labelled
    /// counter that has not been incremented yet (the sidecar renders those on first use).
    pub(crate) fn metric(&self, series: &str) -> f64 {
        counter(&self.app.render_metrics(), series)
    }

    pub(crate) fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What a scripted upstream does with each request head it reads.
#[derive(Clone)]
pub(crate) enum Script {
    /// 200 with this body and a Content-Length; keeps the connection open for more.
    Body(&'static str),
    /// Like `Body`, but closes the connection right after, without saying so (no
    /// `Connection: close`), as an app closing idle keep-alive connections does.
    BodyThenClose(&'static str),
    /// 200 with `n` bytes of exposition-like text, written in 64 KiB pieces.
    Large(usize),
    /// Bytes that are not an HTTP response, then close.
    Garbage,
    /// Wait this long, then answer like `Body`.
    Slow(Duration, &'static str),
    /// Read the request, never answer.
    Hang,
    /// Send a head promising 1000 bytes, send 10, then stall.
    StallBody,
    /// Send a head promising 1000 bytes and nothing more, then stall.
    HeadThenHang,
    /// A response head too large and malformed: 200 with conflicting Content-Length headers.
    ConflictingLength,
    /// These bytes as the response, then close.
    Raw(&'static [u8]),
    /// These pieces as the response, 50 ms apart (so each arrives as a body frame of its own),
    /// then close.
    Paced(&'static [&'static [u8]]),
    /// The response the request's `x-fuzz-case: N` field picks from this list, then close.
    ByCase(Arc<Vec<Vec<u8>>>),
}

/// A loopback upstream that follows a script and records every request head it read.
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    pub heads: Arc<Mutex<Vec<String>>>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

impl Upstream {
    pub(crate) async fn start(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (seen, count) = (heads.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_script(stream, script.clone(), seen.clone()));
            }
        });
        Upstream { addr, heads, accepted }
    }

    pub(crate) fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn serve_script(mut s: TcpStream, script: Script, seen: Arc<Mutex<Vec<String>>>) {
    loop {
        let Some(head) = read_head(&mut s).await else { return };
        seen.lock().unwrap().push(head.clone());
        let _ = match &script {
            Script::BodyThenClose(body) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; \
                        version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
                return;
            }
            Script::Body(body) | Script::Slow(_, body) => {
                if let Script::Slow(delay, _) = &script {
                    tokio::time::sleep(*delay).await;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; \
                        version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                s.write_all(format!("{head}{body}").as_bytes()).await
            }
            Script::Large(n) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {n}\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = exposition(64 * 1024);
                let mut left = *n;
                while left > 0 {
                    let k = left.min(chunk.len());
                    if s.write_all(&chunk.as_bytes()[..k]).await.is_err() {
                        return;
                    }
                    left -= k;
                }
                Ok(())
            }
            Script::Garbage => {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\nthis is not http\r\n").await;
                return;
            }
            Script::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Script::StallBody => {
                let _ =
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789").await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Script::HeadThenHang => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Script::ConflictingLength => {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                    )
                    .await;
                return;
            }
            Script::Raw(bytes) => {
                let _ = s.write_all(bytes).await;
                return;
            }
            Script::Paced(pieces) => {
                for piece in pieces.iter() {
                    let _ = s.write_all(piece).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return;
            }
            Script::ByCase(responses) => {
                let lower = head.to_ascii_lowercase();
                let case = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("x-fuzz-case:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if let Some(bytes) = case.and_then(|i| responses.get(i)) {
                    let _ = s.write_all(bytes).await;
                }
                return;
            }
        };
    }
}

/// Text shaped like the seed's Dropwizard summaries, exactly `n` bytes.
pub(crate) fn exposition(n: usize) -> String {
    let line = "com_example_Endpoint_handle{quantile=\"0.99\",} 4.1210555000000096E-4\n";
    line.repeat(n / line.len() + 1)[..n].to_string()
}

async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match r.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A parsed response from the raw client.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends raw bytes, reads until the server closes (or 10 s pass), and parses one response.
/// `None` when the server closed without answering.
pub(crate) async fn raw(addr: SocketAddr, request: &[u8]) -> Option<Reply> {
    raw_in_pieces(addr, request, request.len().max(1)).await
}

/// `raw`, with the request written `piece` bytes at a time, 2 ms apart.
pub(crate) async fn raw_in_pieces(addr: SocketAddr, request: &[u8], piece: usize) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for (i, bytes) in request.chunks(piece).enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        s.write_all(bytes).await.unwrap();
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    parse_reply(&buf)
}

/// A GET with `Connection: close` and extra header lines.
pub(crate) async fn get(addr: SocketAddr, target: &str, headers: &str) -> Reply {
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n{headers}\r\n");
    raw(addr, req.as_bytes()).await.expect("the sidecar answered")
}

/// The first response in `buf`: its head, and the body its framing gives (what arrived of it).
/// `None` when `buf` holds no complete head with a status.
pub(crate) fn parse_reply(buf: &[u8]) -> Option<Reply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    // Field values may carry obs-text (bytes over 0x7f), which a proxy passes on as they are.
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let reply = Reply { status, head, body: buf[end + 4..].to_vec() };
    let body = match (
        reply.header("transfer-encoding"),
        reply.header("content-length").and_then(|l| l.parse::<usize>().ok()),
    ) {
        (Some(te), _) if te.eq_ignore_ascii_case("chunked") => dechunk(&reply.body),
        (_, Some(len)) => reply.body[..len.min(reply.body.len())].to_vec(),
        _ => reply.body.clone(),
    };
    Some(Reply { body, ..reply })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// The value of the sample `series` (name and labels exactly as rendered) in a text exposition.
pub(crate) fn metric(exposition: &str, series: &str) -> f64 {
    sample(exposition, series).unwrap_or_else(|| panic!("no sample {series} in:\n{exposition}"))
}

/// `metric` for a labelled counter the sidecar renders only once it has counted something: 0
/// until then.
pub(crate) fn counter(exposition: &str, series: &str) -> f64 {
    sample(exposition, series).unwrap_or(0.0)
}

fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// A folder laid out as the kubelet projects a ConfigMap volume: `NAME -> ..data/NAME`, `..data ->
/// ..<version>`, and an update that writes a new version folder and swaps `..data` atomically
/// (a new symlink renamed over the old), which never writes to the file the path names.
pub(crate) struct ConfigMapDir {
    pub dir: std::path::PathBuf,
    name: String,
    version: usize,
}

impl ConfigMapDir {
    pub(crate) fn new(test: &str, name: &str, contents: &str) -> ConfigMapDir {
        let dir =
            std::env::temp_dir().join(format!("meshscrape-proxy-cm-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cm = ConfigMapDir { dir, name: name.to_string(), version: 0 };
        cm.update(contents);
        std::os::unix::fs::symlink(format!("..data/{name}"), cm.path()).unwrap();
        cm
    }

    /// The path a container reads: the key's symlink.
    pub(crate) fn path(&self) -> std::path::PathBuf {
        self.dir.join(&self.name)
    }

    pub(crate) fn update(&mut self, contents: &str) {
        self.version += 1;
        let version = format!("..2026_12_03_00_00_{:02}.{}", self.version, std::process::id());
        std::fs::create_dir_all(self.dir.join(&version)).unwrap();
        std::fs::write(self.dir.join(&version).join(&self.name), contents).unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

impl Drop for ConfigMapDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
