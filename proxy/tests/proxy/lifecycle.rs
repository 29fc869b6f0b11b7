//! The real binary: configuration errors, help, logs, readiness and the SIGTERM drain.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::support::{Script, Upstream, get};

const BIN: &str = env!("CARGO_BIN_EXE_meshscrape-proxy");

/// The sidecar's stderr: the lines read while it started, and the rest.
struct Logs {
    seen: Vec<String>,
    rest: BufReader<std::process::ChildStderr>,
}

impl Logs {
    /// Every line it wrote, once it has exited (or closed stderr).
    fn all(self) -> Vec<String> {
        self.seen.into_iter().chain(self.rest.lines().map_while(Result::ok)).collect()
    }
}

/// Starts the binary on port 0 (JSON logs: `args` must say `--log-format json`) and reads the
/// address it took from its `serving` line, so no port is bound, released and raced for.
fn spawn(args: &[&str]) -> (Child, SocketAddr, Logs) {
    assert!(args.windows(2).any(|w| w == ["--log-format", "json"]), "spawn reads JSON logs");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rest = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut line = String::new();
    while rest.read_line(&mut line).unwrap_or(0) > 0 {
        let this = std::mem::take(&mut line);
        let listen = this
            .contains("\"message\":\"serving\"")
            .then(|| this.split("\"listen\":\"").nth(1)?.split('"').next()?.parse().ok())
            .flatten();
        seen.push(this.trim_end().to_string());
        if let Some(addr) = listen {
            return (child, addr, Logs { seen, rest });
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the sidecar never logged where it serves: {seen:?}");
}

fn terminate(child: &Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

#[test]
fn bad_flag_value_exits_64_naming_the_flag() {
    let out = Command::new(BIN).args(["--upstream", "http://10.1.2.3:8080"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flag --upstream: upstream: `http://10.1.2.3:8080` is not on loopback"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_config_file_exits_64_naming_file_and_line() {
    let dir = std::env::temp_dir().join(format!("meshscrape-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sidecar.yaml");
    std::fs::write(&file, "listen: 0.0.0.0:9090\nroutes:\n  - /ok=/ok\n  - /-/x=/x\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:", file.display())) && err.contains("routes[1]"), "{err}");
    let out = Command::new(BIN).args(["--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn help_explains_routes_and_defaults() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--route <PUBLIC=TARGET>",
        "/readiness to",
        "[key: timeouts.upstream]",
        "Exit codes",
        "RUST_LOG",
    ] {
        assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_scrapes_then_exits_0() {
    let up = Upstream::start(Script::Slow(Duration::from_millis(700), "slow 1\n")).await;
    let upstream = format!("http://{}", up.addr);
    let (mut child, addr, _logs) =
        spawn(&["--upstream", &upstream, "--route", "/m=/m", "--log-format", "json"]);
    assert_eq!(get(addr, "/-/ready", "").await.status, 200);

    let scrape = tokio::spawn(async move { get(addr, "/m", "").await });
    while up.heads().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    terminate(&child);
    let reply = scrape.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "slow 1\n", "the in-flight scrape completed during the drain");

    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn help_matches_its_snapshot() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    insta::assert_snapshot!("help", String::from_utf8(out.stdout).unwrap());
}

#[tokio::test]
async fn rust_log_filters_by_target_and_level() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--route", "/m=/m"])
        .env("RUST_LOG", "info,meshscrape_proxy::server=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("serving"), "{first}");
    terminate(&child);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(rest.iter().any(|l| l.contains("SIGTERM received")), "{rest:?}");
    // `stopped accepting; draining` is an info event of meshscrape_proxy::server.
    assert!(!rest.iter().any(|l| l.contains("draining")), "{rest:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_on_stderr() {
    let (mut child, addr, logs) = spawn(&["--log-format", "json", "--route", "/m=/m"]);
    assert_eq!(get(addr, "/-/healthy", "").await.status, 200);
    terminate(&child);
    let lines = logs.all();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON object: {line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"message\":\"serving\"")), "{lines:?}");
}

#[tokio::test]
async fn a_head_hyper_rejects_is_logged_with_its_reason() {
    let (mut child, addr, logs) = spawn(&["--log-format", "json", "--route", "/m=/m"]);
    // Not HTTP at all: hyper answers 400 itself; our body names the class of fault, and the log
    // has hyper's precise reason.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"GET /m HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    )
    .await
    .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut reply).await;
    assert!(reply.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&reply));
    terminate(&child);
    let lines = logs.all();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let logged = lines
        .iter()
        .find(|l| l.contains("rejected an unparseable or oversized request head"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(
        logged.contains("\"level\":\"INFO\"") && logged.contains("\"peer\":\"127.0.0.1:"),
        "{logged}"
    );
}

#[tokio::test]
async fn the_binary_reloads_on_sighup_and_on_a_kubelet_style_swap_without_restarting() {
    use super::support::ConfigMapDir;
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let config = |route: &str| format!("upstream: http://{}\nroutes: [{route}]\n", up.addr);
    let mut cm = ConfigMapDir::new("binary", "sidecar.yaml", &config("/a=/a"));
    let path = cm.path().display().to_string();
    let (mut child, addr, logs) = spawn(&["--config", &path, "--log-format", "json"]);
    // Lines as they come, read on a thread of their own so that a missing line fails the test
    // after a while instead of hanging it.
    let (tx, lines) = std::sync::mpsc::channel();
    let mut rest = logs.rest;
    std::thread::spawn(move || {
        let mut line = String::new();
        while rest.read_line(&mut line).unwrap_or(0) > 0 {
            if tx.send(std::mem::take(&mut line)).is_err() {
                return;
            }
        }
    });
    let next_reload = || loop {
        let line = lines.recv_timeout(Duration::from_secs(10)).expect("a reload logged");
        if line.contains("configuration reloaded") {
            return line;
        }
    };

    // SIGHUP with the file as it was: a reload all the same, and the log says what caused it.
    let status = Command::new("kill").arg("-HUP").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(next_reload().contains("\"trigger\":\"SIGHUP\""));

    // The kubelet's swap of `..data`: picked up by the file watch within its poll.
    cm.update(&config("/b=/b"));
    assert!(next_reload().contains("\"trigger\":\"file changed\""));
    assert_eq!(get(addr, "/b", "").await.status, 200);
    assert_eq!(get(addr, "/a", "").await.status, 404);
    assert!(child.try_wait().unwrap().is_none(), "still the same process");
    terminate(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
