//! The sidecar link: the ConfigMap the sidecar mounts holds a configuration meshscrape-proxy
//! would start with, listening on the scraped port, with a route for the monitor's path.

use std::path::Path;

use meshscrape_common::{ProxyConfig, ProxyOverrides, Route};
use serde_json::Value;

use super::Scrape;
use super::objects::{id, list, ns_of, s, serving_containers};
use crate::report::{Check, Report};

/// Checks the route when the container that serves the port is meshscrape's sidecar.
pub(super) fn check(x: &Scrape<'_>, report: &mut Report) {
    let image = x.container["image"].as_str().unwrap_or("");
    if x.container["name"] != "meshscrape-proxy" && !image.contains("meshscrape-proxy") {
        return;
    }
    let path = x.endpoint.get("path").and_then(Value::as_str).unwrap_or("/metrics");
    let ns = ns_of(x.workload);
    // The file the sidecar's --config names, and the ConfigMap key mounted there.
    let Some((cm_name, key)) = config_source(x) else {
        report.push(
            Check::warn(
                "sidecar route",
                "the sidecar reads no ConfigMap through --config, so it runs with flags or \
                 defaults; cannot check its routes offline",
                "mount the ConfigMap meshscrape-gen renders and pass its file with --config",
            )
            .on(&x.workload_id),
        );
        return;
    };
    let Some(cm) = x
        .objects
        .in_namespace(&["ConfigMap"], ns)
        .find(|c| s(c, "/metadata/name") == Some(cm_name.as_str()))
    else {
        report.push(
            Check::warn(
                "sidecar route",
                format!("ConfigMap {ns}/{cm_name} is not in the input"),
                "include the sidecar's ConfigMap",
            )
            .on(&x.workload_id),
        );
        return;
    };
    let cmid = id(cm);
    let Some(yaml) = cm.pointer(&format!("/data/{}", key.replace('~', "~0").replace('/', "~1")))
    else {
        report.push(
            Check::fail(
                "sidecar config",
                format!(
                    "the ConfigMap has no key {key}, the file the sidecar's --config reads; it would \
                     exit 64 at start"
                ),
                "render it with meshscrape-gen, or point --config at one of its keys",
            )
            .on(&cmid)
            .at("data"),
        );
        return;
    };
    let yaml = yaml.as_str().unwrap_or("").to_string();
    let proxy = match ProxyConfig::from_yaml(Path::new(&key), &yaml, &ProxyOverrides::default()) {
        Ok(p) => p,
        Err(err) => {
            report.push(
                Check::fail(
                    "sidecar config",
                    format!("meshscrape-proxy would refuse to start: {err}"),
                    "fix the ConfigMap's sidecar configuration",
                )
                .on(&cmid)
                .at(format!("data.{key}")),
            );
            return;
        }
    };
    let port = x.port;
    if i64::from(proxy.listen.port()) != port {
        report.push(
            Check::fail(
                "sidecar listen port",
                format!(
                    "the sidecar listens on {} but the scrape goes to {port}",
                    proxy.listen.port()
                ),
                format!("set listen to 0.0.0.0:{port}"),
            )
            .on(&cmid)
            .at(format!("data.{key}")),
        );
    }
    access(x, &proxy, report);
    if let Some(route) = proxy.routes.iter().find(|r| r.public == path) {
        report.push(Check::pass("sidecar route", format!("the sidecar routes {path}")).on(&cmid));
        targets(x, route, report);
    } else {
        let public: Vec<&str> = proxy.routes.iter().map(|r| r.public.as_str()).collect();
        report.push(
            Check::fail(
                "sidecar route",
                format!(
                    "the sidecar has no route for {path} (routes: {}); Prometheus would get 404",
                    public.join(", ")
                ),
                format!(
                    "add a route {path}=<app path> or set {}.path to one of the routes",
                    x.field
                ),
            )
            .on(x.monitor_id)
            .at(format!("{}.path", x.field)),
        );
    }
}

/// The sidecar's access settings against the monitor's: the scheme, the CA and client
/// certificate of TLS, the bearer token; and every file the sidecar reads for them mounted.
fn access(x: &Scrape<'_>, proxy: &ProxyConfig, report: &mut Report) {
    let ep = x.endpoint;
    let at = |field: &str| format!("{}.{field}", x.field);
    let scheme = ep.get("scheme").and_then(Value::as_str).unwrap_or("http");
    let tls_config = ep.get("tlsConfig");
    let has =
        |pointer: &str| tls_config.and_then(|t| t.pointer(pointer)).is_some_and(|v| !v.is_null());
    let mut says = Vec::new();
    let before = report.checks.len();
    match (&proxy.tls, scheme) {
        (Some(_), "http") => report.push(
            Check::fail(
                "sidecar access",
                "the sidecar serves TLS but the monitor scrapes plain http: every scrape fails \
                 its handshake",
                format!("set {}.scheme to https, with a tlsConfig", x.field),
            )
            .on(x.monitor_id)
            .at(at("scheme")),
        ),
        (None, "https") => report.push(
            Check::fail(
                "sidecar access",
                "the monitor scrapes https but the sidecar serves plain http",
                "set the scheme to http, or give the sidecar tls.certFile and tls.keyFile",
            )
            .on(x.monitor_id)
            .at(at("scheme")),
        ),
        (Some(tls), _) => {
            says.push("TLS".to_string());
            if !has("/ca") && !has("/insecureSkipVerify") {
                report.push(
                    Check::fail(
                        "sidecar access",
                        "the monitor gives Prometheus no CA to check the sidecar's certificate \
                         with",
                        "set tlsConfig.ca to the Secret key holding the CA that signed it",
                    )
                    .on(x.monitor_id)
                    .at(at("tlsConfig.ca")),
                );
            }
            if !has("/serverName") && !has("/insecureSkipVerify") {
                report.push(
                    Check::warn(
                        "sidecar access",
                        "no tlsConfig.serverName: Prometheus checks the certificate against the \
                         pod IP it scrapes, which certificates rarely carry",
                        "set tlsConfig.serverName to a DNS name in the sidecar's certificate",
                    )
                    .on(x.monitor_id)
                    .at(at("tlsConfig.serverName")),
                );
            }
            if tls.client_ca_file.is_some() {
                says.push("client certificates".into());
                if !has("/cert") || !has("/keySecret") {
                    report.push(
                        Check::fail(
                            "sidecar access",
                            "the sidecar demands a client certificate (tls.clientCAFile) but the \
                             monitor sends none: every handshake fails",
                            "set tlsConfig.cert and tlsConfig.keySecret to Prometheus's \
                             certificate and key, signed by that CA",
                        )
                        .on(x.monitor_id)
                        .at(at("tlsConfig")),
                    );
                }
            }
        }
        (None, _) => {}
    }
    let sends_token = ep.pointer("/authorization/credentials").is_some_and(|v| !v.is_null())
        || ep.get("bearerTokenSecret").is_some_and(|v| !v.is_null());
    let bearer = ep
        .pointer("/authorization/type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    match (&proxy.auth.bearer_token_file, sends_token && bearer) {
        (Some(_), false) => report.push(
            Check::fail(
                "sidecar access",
                "the sidecar requires a bearer token but the monitor sends none: every scrape \
                 gets 401",
                format!(
                    "set {}.authorization.credentials to the Secret key holding the token",
                    x.field
                ),
            )
            .on(x.monitor_id)
            .at(at("authorization")),
        ),
        (None, true) => report.push(
            Check::warn(
                "sidecar access",
                "the monitor sends a bearer token that the sidecar does not check",
                "give the sidecar auth.bearerTokenFile, or drop the monitor's authorization",
            )
            .on(x.monitor_id)
            .at(at("authorization")),
        ),
        (Some(_), true) => says.push("a bearer token".into()),
        (None, false) => {}
    }
    // Every file the sidecar reads for these must be in a volume mounted into its container.
    let files = proxy.auth.bearer_token_file.iter().chain(
        proxy
            .tls
            .iter()
            .flat_map(|t| [Some(&t.cert_file), Some(&t.key_file), t.client_ca_file.as_ref()])
            .flatten(),
    );
    for file in files {
        let shown = file.display().to_string();
        let mounted = list(x.container, "/volumeMounts").iter().any(|m| {
            s(m, "/mountPath").is_some_and(|dir| {
                shown.strip_prefix(dir.trim_end_matches('/')).is_some_and(|r| r.starts_with('/'))
            })
        });
        if !mounted {
            report.push(
                Check::fail(
                    "sidecar access",
                    format!(
                        "the sidecar reads {shown}, but no volume is mounted there: it would \
                         exit 64 at start"
                    ),
                    "mount the Secret holding it into the meshscrape-proxy container",
                )
                .on(&x.workload_id),
            );
        }
    }
    if !proxy.auth.allowed_clients.is_empty() {
        let blocks: Vec<String> =
            proxy.auth.allowed_clients.iter().map(ToString::to_string).collect();
        report.push(
            Check::info(
                "sidecar access",
                format!("the sidecar answers only clients in {}", blocks.join(", ")),
                "Prometheus's pod addresses must be in these blocks",
            )
            .on(&x.workload_id),
        );
    }
    let failed = report.checks[before..].iter().any(|c| c.status == crate::report::Status::Fail);
    if !says.is_empty() && !failed {
        report.push(
            Check::pass(
                "sidecar access",
                format!("the sidecar requires {} and the monitor provides it", says.join(", ")),
            )
            .on(x.monitor_id),
        );
    }
}

/// Each target of the scraped route: some container of the pod declares its port. Nothing
/// requires a loopback port to be declared, so a missing one is a warning; it is what a port
/// typed wrong looks like (9010 for node_exporter's 9100), and such a target would be left out
/// of every scrape (or, alone on its route, fail it).
fn targets(x: &Scrape<'_>, route: &Route, report: &mut Report) {
    let pod_spec = x.workload.pointer("/spec/template/spec").unwrap_or(&Value::Null);
    let mut found = Vec::new();
    for target in &route.targets {
        let port = i64::from(target.addr.port());
        let declared = serving_containers(pod_spec).into_iter().find_map(|(c, _)| {
            list(c, "/ports")
                .iter()
                .any(|p| p["containerPort"].as_i64() == Some(port))
                .then(|| s(c, "/name").unwrap_or("?").to_string())
        });
        match declared {
            Some(container) => {
                found.push(format!("port {port} path {} (container {container})", target.path));
            }
            None => report.push(
                Check::warn(
                    "route target",
                    format!(
                        "no container of the pod declares port {port}, where route {} sends \
                         {}; if nothing listens there, that target {}",
                        route.public,
                        target.path,
                        if route.is_merged() {
                            "is left out of every scrape"
                        } else {
                            "fails every scrape with 502"
                        }
                    ),
                    "declare the port on the container that serves it (containerPort), or correct \
                     the target's port",
                )
                .on(&x.workload_id),
            ),
        }
    }
    if !found.is_empty() {
        report.push(
            Check::pass("route target", format!("{} goes to {}", route.public, found.join(", ")))
                .on(&x.workload_id),
        );
    }
}

/// The ConfigMap and key behind the file the container's `--config` names: the volume mounted
/// at the longest prefix of that path, its `items` mapping when it has one.
fn config_source(x: &Scrape<'_>) -> Option<(String, String)> {
    let args: Vec<&str> = ["/command", "/args"]
        .iter()
        .flat_map(|p| list(x.container, p).iter().filter_map(Value::as_str))
        .collect();
    let file = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=")
            .or_else(|| (*a == "--config").then(|| args.get(i + 1).copied()).flatten())
    })?;
    let volumes = list(x.workload, "/spec/template/spec/volumes");
    let (mount, rest) = list(x.container, "/volumeMounts")
        .iter()
        .filter_map(|m| {
            let dir = s(m, "/mountPath")?.trim_end_matches('/');
            let rest = file.strip_prefix(dir)?.strip_prefix('/')?;
            Some((m, rest))
        })
        .max_by_key(|(m, _)| s(m, "/mountPath").map_or(0, str::len))?;
    let volume = volumes.iter().find(|v| v["name"] == mount["name"])?;
    let name = s(volume, "/configMap/name")?.to_string();
    // `items` maps keys to paths; without it every key is a file of its own name.
    let items = list(volume, "/configMap/items");
    let key = if items.is_empty() {
        rest.to_string()
    } else {
        items.iter().find(|i| s(i, "/path") == Some(rest)).and_then(|i| s(i, "/key"))?.to_string()
    };
    Some((name, key))
}
