//! A bare TCP relay for bench/sidecar.py: every byte from the client goes to the upstream and back,
//! with no HTTP parsing, no routing, no limits. It is not a sidecar; it measures what the extra hop
//! itself costs on this machine, the ceiling any forwarding sidecar runs into.
//!
//!   hop tokio   LISTEN UPSTREAM   one thread, tokio's current-thread runtime (as meshscrape-proxy)
//!   hop threads LISTEN UPSTREAM   two blocking threads per connection, one per direction
//!   hop pingpong [ROUNDS]         no relay: the round-trip time of one byte between two threads
//!                                 over loopback TCP, i.e. the price of two wake-ups. Run it once
//!                                 freely and once under `taskset -c 0`: the difference is what
//!                                 waking a thread on another (idle) CPU costs on this machine.
//!
//! Reads from the upstream take up to 256 KiB, as the sidecar's do.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;

const UP_READ: usize = 256 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("pingpong") {
        let rounds = match args.get(1).map(|r| r.parse::<u32>()) {
            None => 100_000,
            Some(Ok(r)) if r > 0 => r,
            Some(_) => {
                eprintln!(
                    "usage: hop pingpong [ROUNDS]   (ROUNDS: a positive whole number, default \
                        100000)"
                );
                return ExitCode::from(64);
            }
        };
        return match pingpong(rounds) {
            Ok(per_round_trip) => {
                println!("{:.2} us per round trip", per_round_trip.as_secs_f64() * 1e6);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hop: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let [mode, listen, upstream] = args.as_slice() else {
        eprintln!(
            "usage: hop tokio|threads LISTEN UPSTREAM   (e.g. hop tokio 127.0.0.1:29093 \
                127.0.0.1:28080), or hop pingpong [ROUNDS]"
        );
        return ExitCode::from(64);
    };
    let result = match mode.as_str() {
        "tokio" => relay_tokio(listen, upstream),
        "threads" => relay_threads(listen, upstream),
        other => {
            Err(std::io::Error::other(format!("unknown mode {other:?}; use tokio or threads")))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn relay_tokio(listen: &str, upstream: &str) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (mut client, _) = listener.accept().await?;
            let upstream = upstream.to_string();
            tokio::spawn(async move {
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = (client.set_nodelay(true), up.set_nodelay(true));
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut up,
                    8 * 1024,
                    UP_READ,
                )
                .await;
            });
        }
    })
}

fn relay_threads(listen: &str, upstream: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    for client in listener.incoming() {
        let client = client?;
        let Ok(up) = TcpStream::connect(upstream) else { continue };
        let _ = (client.set_nodelay(true), up.set_nodelay(true));
        let (client2, up2) = (client.try_clone()?, up.try_clone()?);
        std::thread::spawn(move || pump(client, up, 8 * 1024));
        std::thread::spawn(move || pump(up2, client2, UP_READ));
    }
    Ok(())
}

fn pump(mut from: TcpStream, mut to: TcpStream, size: usize) {
    let mut buf = vec![0; size];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// One byte back and forth between two threads over loopback TCP, `rounds` times after a warm-up;
/// returns the mean round trip. Each round trip is two wake-ups and four tiny syscalls.
fn pingpong(rounds: u32) -> std::io::Result<std::time::Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut b = [b'x'; 1];
    let mut round = |s: &mut TcpStream| -> std::io::Result<()> {
        s.write_all(&b)?;
        s.read_exact(&mut b)
    };
    for _ in 0..1000 {
        round(&mut s)?;
    }
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        round(&mut s)?;
    }
    let elapsed = started.elapsed();
    s.shutdown(Shutdown::Both)?;
    echo.join().map_err(|_| std::io::Error::other("the echo thread panicked"))??;
    Ok(elapsed / rounds)
}
