//! Live reload: a changed file (a ConfigMap update) or SIGHUP puts a new configuration in force,
//! an invalid one is refused whole, and a scrape in flight finishes under the one it started with.

use std::time::Duration;

use meshscrape_common::ProxyOverrides;
use meshscrape_proxy::reload::{self, Reloaded, Reloader};

use super::support::{ConfigMapDir, Script, Sidecar, Upstream, get};

fn routes_to(up: &Upstream, route: &str) -> String {
    format!("upstream: http://{}\nroutes:\n  - {route}\n", up.addr)
}

fn listen_here() -> ProxyOverrides {
    ProxyOverrides { listen: Some("127.0.0.1:0".into()), ..Default::default() }
}

#[tokio::test]
async fn a_configmap_update_puts_the_new_routes_in_force_and_a_bad_one_is_refused() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let mut cm = ConfigMapDir::new("swap", "sidecar.yaml", &routes_to(&up, "/a=/a"));
    let sidecar = Sidecar::start_from(Some(&cm.path()), listen_here()).await;
    let mut reloader = Reloader::new(sidecar.app(), Some(cm.path()), listen_here());
    assert!(reloader.poll().is_none(), "nothing changed yet");
    let hash = sidecar.app().render_metrics();
    let hash = hash.lines().find(|l| l.starts_with("meshscrape_proxy_config_info")).unwrap();

    cm.update(&routes_to(&up, "/b=/b"));
    assert!(
        matches!(reloader.poll(), Some(Reloaded::Applied { restart_required }) if restart_required.is_empty())
    );
    assert_eq!(get(sidecar.addr, "/b", "").await.status, 200);
    assert_eq!(get(sidecar.addr, "/a", "").await.status, 404);
    assert_eq!(sidecar.metric("meshscrape_proxy_config_reloads_total{result=\"success\"}"), 1.0);
    let now = sidecar.app().render_metrics();
    assert!(!now.contains(hash), "the config hash changed: {hash}");

    // Invalid: refused with the file's name and line; the old routes keep serving.
    cm.update(&format!("{}  - /-/x=/x\n", routes_to(&up, "/c=/c")));
    match reloader.poll() {
        Some(Reloaded::Refused(e)) => {
            let shown = e;
            assert!(shown.contains("sidecar.yaml:4:") && shown.contains("/-/"), "{shown}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(get(sidecar.addr, "/b", "").await.status, 200);
    assert_eq!(get(sidecar.addr, "/c", "").await.status, 404);
    assert_eq!(sidecar.metric("meshscrape_proxy_config_reloads_total{result=\"failure\"}"), 1.0);
    assert_eq!(sidecar.metric("meshscrape_proxy_config_last_reload_successful"), 0.0);
    assert!(reloader.poll().is_none(), "the same bad file is not refused again every poll");

    // Fixed: in force, and the gauge says so.
    cm.update(&routes_to(&up, "/c=/c"));
    assert!(matches!(reloader.poll(), Some(Reloaded::Applied { .. })));
    assert_eq!(get(sidecar.addr, "/c", "").await.status, 200);
    assert_eq!(sidecar.metric("meshscrape_proxy_config_last_reload_successful"), 1.0);
}

#[tokio::test]
async fn settings_that_need_a_restart_are_reported_and_the_rest_applied() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let mut cm = ConfigMapDir::new("restart", "sidecar.yaml", &routes_to(&up, "/a=/a"));
    // No listen flag here: the file's listen is the one that changes.
    let sidecar = Sidecar::start_from(Some(&cm.path()), listen_here()).await;
    let mut reloader = Reloader::new(sidecar.app(), Some(cm.path()), ProxyOverrides::default());
    cm.update(&format!(
        "listen: 127.0.0.1:1\nlimits:\n  maxConnections: 50\n{}",
        routes_to(&up, "/b=/b")
    ));
    match reloader.poll() {
        Some(Reloaded::Applied { restart_required }) => {
            assert_eq!(restart_required, ["listen", "limits.maxConnections"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get(sidecar.addr, "/b", "").await.status, 200, "the routes took effect");
    assert_eq!(sidecar.metric("meshscrape_proxy_config_restart_required{key=\"listen\"}"), 1.0);
}

#[tokio::test]
async fn a_scrape_in_flight_finishes_under_the_configuration_it_started_with() {
    let up = Upstream::start(Script::Slow(Duration::from_millis(400), "slow 1\n")).await;
    let mut cm = ConfigMapDir::new("inflight", "sidecar.yaml", &routes_to(&up, "/a=/a"));
    let sidecar = Sidecar::start_from(Some(&cm.path()), listen_here()).await;
    let mut reloader = Reloader::new(sidecar.app(), Some(cm.path()), listen_here());
    let addr = sidecar.addr;
    let scrape = tokio::spawn(async move { get(addr, "/a", "").await });
    while up.heads().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cm.update(&routes_to(&up, "/b=/b"));
    assert!(matches!(reloader.poll(), Some(Reloaded::Applied { .. })));
    let reply = scrape.await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "slow 1\n"));
    assert_eq!(get(sidecar.addr, "/a", "").await.status, 404, "new scrapes see the new routes");
}

#[tokio::test]
async fn the_watch_loop_notices_a_swap_on_its_own() {
    let up = Upstream::start(Script::Body("x 1\n")).await;
    let mut cm = ConfigMapDir::new("watch", "sidecar.yaml", &routes_to(&up, "/a=/a"));
    let sidecar = Sidecar::start_from(Some(&cm.path()), listen_here()).await;
    let reloader = Reloader::new(sidecar.app(), Some(cm.path()), listen_here());
    // Nobody sends this process SIGHUP; the loop must find the change by itself.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let watch = tokio::spawn(reload::watch(reloader, Duration::from_millis(50), hangup));
    cm.update(&routes_to(&up, "/b=/b"));
    let mut status = 0;
    for _ in 0..100 {
        status = get(sidecar.addr, "/b", "").await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.abort();
    assert_eq!(status, 200, "the swap was never noticed");
}
