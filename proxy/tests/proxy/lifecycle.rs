//! The real binary: configuration errors, help, logs, readiness and the SIGTERM drain.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::support::{Script, Upstream, get};

const BIN: &str = env!("CARGO_BIN_EXE_meshscrape-proxy");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the binary and waits (bounded) until `/-/ready` answers.
async fn spawn(args: &[&str]) -> (Child, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(BIN)
        .arg("--listen")
        .arg(addr.to_string())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (child, addr);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the sidecar did not listen on {addr}");
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
    let (mut child, addr) =
        spawn(&["--upstream", &upstream, "--route", "/m=/m", "--log-format", "json"]).await;
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
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--route", "/m=/m"])
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
    let (mut child, addr) = spawn(&["--log-format", "json", "--route", "/m=/m"]).await;
    assert_eq!(get(addr, "/-/healthy", "").await.status, 200);
    terminate(&child);
    let stderr = child.stderr.take().unwrap();
    let lines: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON object: {line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"message\":\"serving\"")), "{lines:?}");
}

#[tokio::test]
async fn a_head_hyper_rejects_is_logged_with_its_reason() {
    let (mut child, addr) = spawn(&["--log-format", "json", "--route", "/m=/m"]).await;
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
    let stderr = child.stderr.take().unwrap();
    let lines: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
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
