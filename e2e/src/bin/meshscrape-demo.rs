//! `meshscrape-demo` (run by `scripts/demo`): meshscrape on one machine, in containers. The
//! example app behind a STRICT-mTLS gate, the meshscrape sidecar in its pod exactly as the
//! generated Deployment describes it, a real Prometheus 3.5 scraping through the sidecar, and the
//! verifier's checks of both; then it waits for Ctrl-C and removes everything it started.
//!
//! The pod and Prometheus are the container tests' own (`meshscrape_e2e::pod`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use meshscrape_e2e::pod::{self, Scratch};
use meshscrape_e2e::{Example, METRIC, docker, human, until};
use meshscrape_verify::endpoint;

/// Try meshscrape on this machine: an app behind an mTLS gate, the sidecar, and Prometheus 3.5
/// scraping through it, in containers; checked by meshscrape-verify.
///
/// Needs a Docker engine (scripts/setup-debian --with-docker installs and starts one). The first
/// run builds the images (a Debian base by debootstrap, the sidecar's static build): a few
/// minutes; later runs reuse them. Ctrl-C removes every container and network it started.
#[derive(Debug, Parser)]
#[command(name = "meshscrape-demo", max_term_width = 100)]
struct Args {
    /// The port on 127.0.0.1 where Prometheus's UI is published
    #[arg(long, default_value_t = 9090, value_name = "PORT")]
    port: u16,
    /// Run the checks, print the result, clean up and exit (for scripts and tests)
    #[arg(long)]
    once: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshscrape-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let network = format!("meshscrape-demo-{}", std::process::id());
    // Ctrl-C (or SIGTERM) at any step drops the demo where it is, and with it every container it
    // has started (testcontainers removes a container when its handle is dropped).
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = demo(&args, &network) => outcome,
            why = interrupted() => {
                eprintln!("\n{why}: stopping and removing what the demo started…");
                Ok(())
            }
        }
    });
    // The containers went with `demo`'s values; the network is removed once they are gone.
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", &network])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match outcome {
        Ok(()) => {
            eprintln!("Removed everything the demo started.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshscrape-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One numbered step, with the time it took when it is done.
struct Step {
    started: Instant,
}

impl Step {
    fn start(n: usize, what: &str) -> Step {
        eprintln!("[{n}/5] {what}…");
        Step { started: Instant::now() }
    }

    fn done(self, what: &str) {
        eprintln!("      {what} ({:.1}s)", self.started.elapsed().as_secs_f64());
    }
}

async fn demo(args: &Args, network: &str) -> Result<(), String> {
    // Before anything is built: the port must be free, or the demo says so now, not in five
    // minutes when Docker cannot publish it.
    let ui = SocketAddr::from(([127, 0, 0, 1], args.port));
    if let Err(e) = std::net::TcpListener::bind(ui) {
        return Err(format!(
            "cannot publish Prometheus on {ui}: {e}; something else listens there. Pick another \
             port with --port"
        ));
    }
    let demo_app = std::env::current_exe()
        .map_err(|e| format!("cannot find this program's folder: {e}"))?
        .with_file_name("demo-app");
    if !demo_app.is_file() {
        return Err(format!(
            "{} is missing; run the demo with scripts/demo, which builds it",
            demo_app.display()
        ));
    }

    let step = Step::start(1, "Building the images (the first run takes a few minutes)");
    let images = tokio::task::spawn_blocking(move || docker::build_images(&demo_app))
        .await
        .map_err(|e| format!("building the images: {e}"))??;
    step.done("sidecar, app, Prometheus 3.5 and Debian base images ready");

    let step = Step::start(2, "Starting the pod: app, STRICT-mTLS gate, meshscrape sidecar");
    let example = Example::render_fast();
    let scratch = Scratch::new("demo");
    let pod = pod::start_pod(&images, &example, &scratch, network, true).await?;
    step.done(&format!("pod at {}; the sidecar answers on {}:9090", pod.ip, pod.ip));

    let step = Step::start(3, "Starting Prometheus 3.5, scraping the pod through the sidecar");
    let mut job = example.job();
    job.target = format!("{}:9090", pod.ip);
    let (prom, prom_url) = pod::start_prometheus(
        &images.prometheus3,
        network,
        &scratch,
        std::slice::from_ref(&job),
        Some(args.port),
    )
    .await?;
    step.done(&format!("Prometheus ready ({prom_url} on the Docker network)"));

    let step = Step::start(4, "meshscrape-verify endpoint: a scrape as Prometheus makes it");
    let url = format!("http://{}:9090{}", pod.ip, job.path);
    let eo = endpoint::Options {
        probes: vec!["/readiness".into(), "/liveness".into()],
        ..Default::default()
    };
    let report = endpoint::check(&url, &eo).await;
    eprintln!("{}", indent(&human(&report)));
    if report.failed() {
        return Err(format!("the endpoint check failed for {url} (above)"));
    }
    step.done("the sidecar serves the app's metrics");

    let step = Step::start(5, "meshscrape-verify prometheus: the target as Prometheus sees it");
    let options = job.expecting(&format!("{METRIC}_count"), Default::default());
    let report = until(&prom_url, &options, false, Duration::from_secs(90)).await;
    eprintln!("{}", indent(&human(&report)));
    if report.failed() {
        return Err("Prometheus does not have the target up with its metric (above)".into());
    }
    step.done("Prometheus scrapes the app through the sidecar");

    let ui = format!("http://{ui}");
    println!(
        "\nmeshscrape is running.\n  \
         Prometheus:   {ui}/targets  (the job {job}, target {target}, up)\n  \
         Try a query:  {ui}/query?g0.expr={METRIC}_count\n                \
         or up{{job=\"{job}\"}}, and meshscrape_proxy_requests_total for the sidecar's own\n  \
         The sidecar:  curl http://{ip}:9090{path}   (plaintext, excluded from the mesh)\n  \
         The app port: curl http://{ip}:8080{path}   (refused: the gate wants mTLS)",
        job = job.job,
        target = job.target,
        ip = pod.ip,
        path = job.path,
    );
    if args.once {
        println!("--once: stopping now.");
    } else {
        println!("Press Ctrl-C to stop and remove everything.");
        // Until `interrupted` ends the demo.
        std::future::pending::<()>().await;
    }
    drop(prom);
    drop(pod);
    drop(scratch);
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, saying which.
async fn interrupted() -> &'static str {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
}
