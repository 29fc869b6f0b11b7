//! The seed's identity-service, as far as monitoring sees it: Dropwizard-style metrics at
//! `/prometheus`, probes at `/ready` and `/alive`, on 127.0.0.1:8080 by default (loopback, like an
//! app whose only inbound path is the mesh). `/prometheus?bytes=N` pads the exposition to about
//! N bytes with extra series, written in chunks, for the large-scrape tests.
//!
//! Usage: demo-app [LISTEN_ADDR]
//!
//! std only, a thread per connection, HTTP/1.1 keep-alive: it runs in a Debian container with
//! nothing but libc.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};

const METRIC: &str = "com_hybris_yprofile_identity_web_rest_HealthEndpoint_isAlive";

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo-app: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    // The address actually bound (port 0 picks one), for whoever started it.
    let bound = listener.local_addr().map_or(addr, |a| a.to_string());
    eprintln!("demo-app: listening on {bound}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut close = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let lower = line.to_ascii_lowercase();
            close |= lower.starts_with("connection:") && lower.contains("close");
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        match path {
            "/prometheus" => {
                let pad: usize = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("bytes="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                exposition(&mut out, method == "HEAD", pad)?;
            }
            "/ready" | "/alive" => respond(&mut out, "200 OK", "ok\n")?,
            _ => respond(&mut out, "404 Not Found", "not found\n")?,
        }
        if close {
            return Ok(());
        }
    }
}

fn respond(out: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The seed's summary, then `pad` bytes' worth of gauge lines of a fixed width.
fn exposition(out: &mut TcpStream, head_only: bool, pad: usize) -> std::io::Result<()> {
    let head = format!(
        "# HELP {METRIC} Generated from Dropwizard metric import\n# TYPE {METRIC} \
            summary\n{METRIC}{{quantile=\"0.5\",}} 1.353475E-4\n{METRIC}{{quantile=\"0.99\",}} \
                4.1210555000000096E-4\n{METRIC}_count 50598.0\n"
    );
    let filler_head = "# TYPE demo_padding gauge\n";
    // Every padding line is exactly 64 bytes: "demo_padding{n=\"" + 12 digits + "\"} " + value + "\n".
    let lines = pad.div_ceil(64);
    let len = head.len() + if lines > 0 { filler_head.len() + lines * 64 } else { 0 };
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; \
            charset=utf-8\r\nContent-Length: {len}\r\n\r\n"
    )?;
    if head_only {
        return Ok(());
    }
    out.write_all(head.as_bytes())?;
    if lines == 0 {
        return Ok(());
    }
    out.write_all(filler_head.as_bytes())?;
    let mut chunk = Vec::with_capacity(64 * 1024);
    for n in 0..lines {
        // 16 + 12 + 3 = 31 bytes of name and label, 32 of value, 1 newline.
        writeln!(chunk, "demo_padding{{n=\"{n:012}\"}} {:>32}", n % 1000)?;
        if chunk.len() >= 60 * 1024 {
            out.write_all(&chunk)?;
            chunk.clear();
        }
    }
    out.write_all(&chunk)
}
