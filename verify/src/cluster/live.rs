//! The live links, which only a running cluster has: EndpointSlices ready on the metrics port,
//! the metrics container of each pod ready (and why not), and Prometheus's own view of the job
//! through a port-forward to one of its pods.

use std::sync::Arc;

use serde_json::Value;

use super::forward::{Connector, through_forward};
use super::read::{Reader, label_selector, resource};
use super::{Options, name_of};
use crate::error::Error;
use crate::manifests::{s, serving_containers};
use crate::prometheus;
use crate::report::{Check, Report};

/// EndpointSlices of the Service: how many endpoints are ready on the metrics port.
pub(super) async fn check_endpoint_slices(
    reader: &Reader<'_>,
    options: &Options,
    sid: &str,
    port_name: &str,
    report: &mut Report,
) -> Result<(), Error> {
    let slices = reader
        .list(
            &resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
            Some(&options.namespace),
            Some(&format!("kubernetes.io/service-name={}", options.service)),
            report,
        )
        .await?;
    // May not be listed: said in the report already.
    let Some(slices) = slices else { return Ok(()) };
    if slices.is_empty() {
        report.push(
            Check::fail(
                "EndpointSlices",
                "the Service has no EndpointSlices",
                "its spec.selector matches no pod, or no pod is scheduled (kubectl get pods -l …)",
            )
            .on(sid),
        );
        return Ok(());
    }
    let (mut ready, mut total, mut number) = (0, 0, None);
    for slice in &slices {
        let ports = slice.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let Some(p) = ports.iter().find(|p| s(p, "/name") == Some(port_name)) else { continue };
        number = p.get("port").and_then(Value::as_i64);
        for e in slice.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
            total += 1;
            // An absent `ready` is "unknown", which consumers are told to read as ready.
            if e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false) {
                ready += 1;
            }
        }
    }
    let Some(number) = number else {
        report.push(
            Check::fail(
                "EndpointSlices",
                format!("no EndpointSlice carries the port {port_name}"),
                "the Service's targetPort matches no container port of its pods",
            )
            .on(sid),
        );
        return Ok(());
    };
    let what = format!("{ready} of {total} endpoints ready on port {port_name} ({number})");
    report.push(
        match (ready, total) {
            (0, _) => Check::fail(
                "EndpointSlices",
                what,
                "no pod is ready: see the pod checks; Prometheus scrapes only ready endpoints",
            ),
            (r, t) if r < t => {
                Check::warn("EndpointSlices", what, "some pods are not ready: see the pod checks")
            }
            _ => Check::pass("EndpointSlices", what),
        }
        .on(sid),
    );
    Ok(())
}

/// The pods behind the Service: is the container that serves the metrics port (`target`: a
/// number or a container port name) ready? Returns a ready pod and the container port to scrape.
pub(super) fn check_pods(
    pods: &[Value],
    target: &Value,
    sid: &str,
    report: &mut Report,
) -> Option<(String, u16)> {
    if pods.is_empty() {
        report.push(
            Check::fail(
                "pods",
                "no pod matches the Service's selector",
                "check the Deployment's pod labels against the Service's spec.selector",
            )
            .on(sid),
        );
        return None;
    }
    let mut chosen = None;
    for pod in pods {
        let pid = format!("Pod/{}/{}", s(pod, "/metadata/namespace").unwrap_or(""), name_of(pod));
        let pod_spec = pod.pointer("/spec").unwrap_or(&Value::Null);
        let found = serving_containers(pod_spec).into_iter().find_map(|(c, _)| {
            let p = c.get("ports")?.as_array()?.iter().find(|p| match target {
                Value::Number(n) => p.get("containerPort").and_then(Value::as_i64) == n.as_i64(),
                Value::String(name) => s(p, "/name") == Some(name),
                _ => false,
            })?;
            Some((
                s(c, "/name").unwrap_or("?").to_string(),
                p.get("containerPort").and_then(Value::as_u64).unwrap_or(0),
            ))
        });
        let Some((cname, port)) = found else {
            report.push(
                Check::fail(
                    "metrics container",
                    format!("no container declares port {target}"),
                    "declare the sidecar's containerPort and name it as the Service's targetPort \
                        or the PodMonitor's port",
                )
                .on(&pid),
            );
            continue;
        };
        // A native sidecar's status is among the init containers'.
        let statuses: Vec<Value> = ["/status/containerStatuses", "/status/initContainerStatuses"]
            .iter()
            .flat_map(|p| pod.pointer(p).and_then(Value::as_array).cloned().unwrap_or_default())
            .collect();
        let status = statuses.iter().find(|st| s(st, "/name") == Some(cname.as_str()));
        let ready = status.and_then(|st| st.get("ready")).and_then(Value::as_bool) == Some(true);
        let restarts =
            status.and_then(|st| st.get("restartCount")).and_then(Value::as_i64).unwrap_or(0);
        let last = status.and_then(|st| s(st, "/lastState/terminated/reason"));
        let waiting = status.and_then(|st| s(st, "/state/waiting/reason"));
        if ready {
            let mut check =
                Check::pass("metrics container", format!("{cname} is ready on port {port}"));
            if restarts > 0 {
                check = Check::warn(
                    "metrics container",
                    format!(
                        "{cname} is ready on port {port} but restarted {restarts} time(s){}",
                        last.map(|r| format!(", last: {r}")).unwrap_or_default()
                    ),
                    restart_fix(last),
                );
            }
            report.push(check.on(&pid));
            if chosen.is_none() {
                chosen = Some((name_of(pod).to_string(), u16::try_from(port).unwrap_or(0)));
            }
        } else {
            let why = waiting.or(last).map(|r| format!(" ({r})")).unwrap_or_default();
            report.push(
                Check::fail(
                    "metrics container",
                    format!("{cname} is not ready{why}"),
                    restart_fix(last.or(waiting)),
                )
                .on(&pid),
            );
        }
    }
    chosen
}

fn restart_fix(reason: Option<&str>) -> String {
    match reason {
        Some("OOMKilled") => "the container ran out of memory: raise its memory limit or lower limits.maxInFlight in the sidecar config".into(),
        Some("CrashLoopBackOff") | Some("Error") => {
            "read its log (kubectl logs --previous -c <container>); exit 64 means a bad sidecar \
                config".into()
        }
        _ => "kubectl describe pod and kubectl logs -c <container> say why".into(),
    }
}

/// Ask Prometheus, through a port-forward to one of its pods, about the monitor's targets.
/// The targets to ask Prometheus about.
pub(super) struct Target {
    pub(super) scrape_pool: Option<String>,
    pub(super) job: Option<String>,
}

pub(super) async fn check_prometheus(
    reader: &Reader<'_>,
    connector: Arc<dyn Connector>,
    options: &Options,
    (ns, name): (&str, &str),
    target: Target,
    report: &mut Report,
) -> Result<(), Error> {
    let psid = format!("Service/{ns}/{name}");
    let Some(svc) = reader.get(&resource("", "v1", "Service", "services"), ns, name).await? else {
        report.push(
            Check::fail(
                "Prometheus",
                format!("there is no {psid}"),
                "pass --prometheus NAMESPACE/SERVICE, e.g. monitoring/prometheus-operated",
            )
            .on(&psid),
        );
        return Ok(());
    };
    let selector =
        svc.pointer("/spec/selector").and_then(Value::as_object).cloned().unwrap_or_default();
    let Some(pods) = reader
        .list(
            &resource("", "v1", "Pod", "pods"),
            Some(ns),
            Some(&label_selector(&selector)),
            report,
        )
        .await?
    else {
        return Ok(());
    };
    let ready = pods.iter().find(|p| {
        p.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| s(c, "/type") == Some("Ready") && s(c, "/status") == Some("True"))
    });
    let Some(pod) = ready else {
        report.push(
            Check::fail(
                "Prometheus",
                format!("no ready pod behind {psid}"),
                "check the Prometheus pods (kubectl get pods -n …)",
            )
            .on(&psid),
        );
        return Ok(());
    };
    // The web port: a number, or a name the pod's containers declare; 9090 when unsaid.
    let first = svc.pointer("/spec/ports/0").cloned().unwrap_or(Value::Null);
    let port = match first.get("targetPort") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(pname)) => pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c.get("ports").and_then(Value::as_array).into_iter().flatten())
            .find(|p| s(p, "/name") == Some(pname.as_str()))
            .and_then(|p| p.get("containerPort")?.as_u64()),
        _ => first.get("port").and_then(Value::as_u64),
    }
    .and_then(|p| u16::try_from(p).ok())
    .unwrap_or(9090);
    let popts = prometheus::Options {
        scrape_pool: target.scrape_pool,
        job: target.job,
        labels: Vec::new(),
        expect_metric: options.expect_metric.clone(),
        timeout: options.endpoint.timeout,
        version: options.prometheus_version,
    };
    let target = format!("pod/{ns}/{}:{port}", name_of(pod));
    let found =
        through_forward(connector, ns, name_of(pod), port, &target, "http", |base| async move {
            // Reached through the forward but not answering as Prometheus: a failed link here.
            prometheus::check(&base, &popts).await.unwrap_or_else(|e| {
                let mut r = Report::default();
                r.push(
                    Check::fail("Prometheus API", e.to_string(), "check the Prometheus pod")
                        .on(&base),
                );
                r
            })
        })
        .await;
    report.checks.extend(found.checks);
    Ok(())
}
