//! The sidecar link: the ConfigMap the sidecar mounts holds a configuration meshscrape-proxy
//! would start with, listening on the scraped port, with a route for the monitor's path.

use std::path::Path;

use meshscrape_common::{ProxyConfig, ProxyOverrides};
use serde_json::Value;

use super::Scrape;
use super::objects::{id, list, ns_of, s};
use crate::report::{Check, Report};

/// Checks the route when the container that serves the port is meshscrape's sidecar.
pub(super) fn check(x: &Scrape<'_>, report: &mut Report) {
    let image = x.container["image"].as_str().unwrap_or("");
    if x.container["name"] != "meshscrape-proxy" && !image.contains("meshscrape-proxy") {
        return;
    }
    let path = x.endpoint.get("path").and_then(Value::as_str).unwrap_or("/metrics");
    let ns = ns_of(x.workload);
    // The ConfigMap mounted by the sidecar and named in its --config.
    let volumes = list(x.workload, "/spec/template/spec/volumes");
    let cm_name = list(x.container, "/volumeMounts").iter().find_map(|mnt| {
        volumes.iter().find(|v| v["name"] == mnt["name"]).and_then(|v| s(v, "/configMap/name"))
    });
    let Some(cm_name) = cm_name else {
        report.push(
            Check::warn(
                "sidecar route",
                "the sidecar mounts no ConfigMap, so it runs with flags or defaults; cannot check \
                 its routes offline",
                "mount the ConfigMap meshscrape-gen renders",
            )
            .on(&x.workload_id),
        );
        return;
    };
    let Some(cm) = x
        .objects
        .of_kind(&["ConfigMap"])
        .find(|c| ns_of(c) == ns && s(c, "/metadata/name") == Some(cm_name))
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
    let Some((key, yaml)) = cm
        .get("data")
        .and_then(Value::as_object)
        .and_then(|d| d.iter().next())
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
    else {
        report.push(
            Check::fail(
                "sidecar route",
                "the ConfigMap has no data",
                "render it with meshscrape-gen",
            )
            .on(&cmid),
        );
        return;
    };
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
    if proxy.routes.iter().any(|r| r.public == path) {
        report.push(Check::pass("sidecar route", format!("the sidecar routes {path}")).on(&cmid));
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
