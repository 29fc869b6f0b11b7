//! One validating function per section of the application config file. Each turns its part of
//! the file's shape into the model, records every problem it finds (with the line it was found
//! at) and carries on, so that a whole file's mistakes are reported at once. A value derived from
//! another key is checked at that key, never reported a second time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use super::file::{
    ContainerFile, IstioFile, Labels, MonitorFile, NetworkPolicyFile, S, SecretKeyFile,
    ServiceFile, SidecarFile,
};
use super::{
    Container, DEFAULT_SIDECAR_IMAGE, Dataplane, IstioMode, Monitor, MonitorKind, NetworkPolicy,
    Resources, SecretKey, Service, Sidecar, SidecarTls, mounts,
};
use crate::error::{ConfigError, Origin, Problem, Problems, Sourced};
use crate::proxy::{self, ProxyConfig, ProxyFile, ProxyOverrides};
use crate::{duration, names};

/// The file being validated and the problems found in it so far.
pub(super) struct Check<'a> {
    pub(super) path: &'a Path,
    pub(super) problems: Problems,
}

impl Check<'_> {
    pub(super) fn fail(&mut self, field: &str, loc: &Location, message: String) {
        self.problems.push(Origin::at(Some(self.path), loc), field, message);
    }

    /// Runs `f` on a spanned value; records a problem at its line on failure.
    pub(super) fn value<T, U>(
        &mut self,
        field: &str,
        v: &S<T>,
        f: impl FnOnce(&T) -> Result<U, String>,
    ) -> Option<U> {
        let origin = Origin::at(Some(self.path), &v.referenced);
        self.problems.check(field, Sourced { value: &v.value, origin }, f)
    }

    pub(super) fn labels(&mut self, field: &str, v: &S<Labels>, required: bool) -> Labels {
        if required && v.value.is_empty() {
            self.fail(field, &v.referenced, "needs at least one label, e.g. app: my-app".into());
        }
        for (k, val) in &v.value {
            if let Err(m) = names::label_key(k).and_then(|()| names::label_value(val)) {
                self.fail(&format!("{field}.{k}"), &v.referenced, m);
            }
        }
        v.value.clone()
    }

    /// A DNS-1123 label at `field`.
    fn label_name(&mut self, field: &str, v: &S<String>) -> Option<String> {
        self.value(field, v, |n| names::dns1123_label(n).map(|()| n.clone()))
    }
}

/// The file's value, or `default` with no location (reported as "key not set, default used").
/// The sidecar's limits must fit its memory limit (see `proxy::sizing`): otherwise a burst of
/// scrapes any admitted client can cause gets the pod OOM-killed.
fn fits_memory(c: &mut Check<'_>, proxy: &ProxyConfig, memory: &str, f: &SidecarFile) {
    let Some(limit) = names::quantity_bytes(memory) else { return };
    let needed = proxy::sizing::limit_for(&proxy.limits);
    if needed <= limit {
        return;
    }
    let mib = |b: u64| b.div_ceil(1 << 20);
    let (in_flight, conns) = (proxy.limits.max_in_flight, proxy.limits.max_connections);
    let fitting = proxy::sizing::max_in_flight_for(limit, conns);
    let lower = if fitting >= 1 {
        format!("lower sidecar.limits.maxInFlight to {fitting}")
    } else {
        "lower sidecar.limits.maxConnections".to_string()
    };
    let limits = f.limits.as_ref();
    let at =
        limits.and_then(|l| l.max_in_flight.as_ref().or(l.max_connections.as_ref())).map_or_else(
            || f.resources.limits.memory.as_ref().map_or(Location::UNKNOWN, |m| m.referenced),
            |v| v.referenced,
        );
    c.fail(
        "sidecar.limits",
        &at,
        format!(
            "{in_flight} scrapes in flight and {conns} connections need a memory limit of at \
                least {}Mi, but sidecar.resources.limits.memory is {memory}: a burst of slow \
                scrapes could get the pod OOM-killed; {lower}, or raise the memory limit",
            mib(needed),
        ),
    );
}

pub(super) fn or_default<T: Clone>(v: &Option<S<T>>, default: T) -> S<T> {
    v.clone().unwrap_or_else(|| Spanned::new(default, Location::UNKNOWN, Location::UNKNOWN))
}

/// `namespaces`: at least one, each a DNS label, none twice.
pub(super) fn namespaces(c: &mut Check<'_>, f: &S<Vec<S<String>>>) -> Vec<String> {
    if f.value.is_empty() {
        c.fail("namespaces", &f.referenced, "list at least one namespace, e.g. [tools]".into());
    }
    let mut namespaces: Vec<String> = Vec::new();
    for (i, ns) in f.value.iter().enumerate() {
        let field = format!("namespaces[{i}]");
        if namespaces.contains(&ns.value) {
            c.fail(&field, &ns.referenced, format!("`{}` is listed twice", ns.value));
        } else if c.value(&field, ns, |n| names::dns1123_label(n)).is_some() {
            namespaces.push(ns.value.clone());
        }
    }
    namespaces
}

/// `container`: the app container; its name defaults to the app's.
pub(super) fn container(c: &mut Check<'_>, f: &ContainerFile, app: Option<&String>) -> Container {
    Container {
        name: match &f.name {
            Some(n) => c.label_name("container.name", n),
            None => app.cloned(),
        }
        .unwrap_or_default(),
        image: c.value("container.image", &f.image, image).unwrap_or_default(),
        port: c.value("container.port", &f.port, |p| names::port(*p)).unwrap_or(0),
        port_name: c
            .value("container.portName", &or_default(&f.port_name, "http".into()), |n| {
                names::port_name(n).map(|()| n.clone())
            })
            .unwrap_or_default(),
        replicas: or_default(&f.replicas, 1).value,
        readiness_path: f
            .probes
            .readiness
            .as_ref()
            .and_then(|p| c.value("container.probes.readiness", p, |s| probe_path(s))),
        liveness_path: f
            .probes
            .liveness
            .as_ref()
            .and_then(|p| c.value("container.probes.liveness", p, |s| probe_path(s))),
    }
}

/// `service`: named like the app and labelled like its pods unless the file says otherwise.
pub(super) fn service(
    c: &mut Check<'_>,
    f: &ServiceFile,
    app: Option<&String>,
    container: &Container,
    pod_labels: &Labels,
) -> Service {
    Service {
        name: match &f.name {
            Some(n) => c.label_name("service.name", n),
            None => app.cloned(),
        }
        .unwrap_or_default(),
        port: match &f.port {
            Some(p) => c.value("service.port", p, |p| names::port(*p)).unwrap_or(0),
            None => container.port,
        },
        labels: f
            .labels
            .as_ref()
            .map(|l| c.labels("service.labels", l, false))
            .unwrap_or_else(|| pod_labels.clone()),
    }
}

/// `sidecar`: its container and the proxy configuration it is started with, resolved by the very
/// code `meshscrape-proxy --config` runs. `None` when that configuration is invalid (its problems
/// are recorded under `sidecar.`); `Err` only for what is not a problem with a value.
pub(super) fn sidecar(
    c: &mut Check<'_>,
    f: &SidecarFile,
    container: &Container,
) -> Result<Option<Sidecar>, ConfigError> {
    let image_s = or_default(&f.image, DEFAULT_SIDECAR_IMAGE.into());
    let sidecar_image = c.value("sidecar.image", &image_s, image).unwrap_or_default();
    let port_s = or_default(&f.port, 9090);
    let port = c.value("sidecar.port", &port_s, |p| names::port(*p));
    if let Some(p) = port
        && p == container.port
    {
        let other = if p == 9090 { 9091 } else { 9090 };
        c.fail(
            "sidecar.port",
            &port_s.referenced,
            format!("{p} is also the app's port; set sidecar.port to another, e.g. {other}"),
        );
    }
    let port_name_s = or_default(&f.port_name, "prometheus".into());
    let port_name = c
        .value("sidecar.portName", &port_name_s, |n| names::port_name(n).map(|()| n.clone()))
        .unwrap_or_default();
    if port_name == container.port_name {
        c.fail(
            "sidecar.portName",
            &port_name_s.referenced,
            format!("`{port_name}` is also the app port's name; choose another"),
        );
    }
    let r = &f.resources;
    let mut quantity = |field: &str, v: &Option<S<String>>, default: &str| {
        c.value(field, &or_default(v, default.to_string()), |q| {
            names::quantity(q).map(|()| q.clone())
        })
        .unwrap_or_default()
    };
    let resources = Resources {
        requests_cpu: quantity("sidecar.resources.requests.cpu", &r.requests.cpu, "50m"),
        requests_memory: quantity("sidecar.resources.requests.memory", &r.requests.memory, "10Mi"),
        limits_cpu: quantity("sidecar.resources.limits.cpu", &r.limits.cpu, "100m"),
        limits_memory: quantity("sidecar.resources.limits.memory", &r.limits.memory, "15Mi"),
    };
    let access = access(c, f);
    let derived = |v: String| Some(Spanned::new(v, Location::UNKNOWN, Location::UNKNOWN));
    let app_port = if container.port == 0 { 8080 } else { container.port };
    let proxy_file = ProxyFile {
        listen: derived(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port.unwrap_or(9090)).to_string(),
        ),
        upstream: derived(format!("http://127.0.0.1:{app_port}")),
        routes: f.routes.clone(),
        timeouts: f.timeouts.clone(),
        limits: f.limits.clone(),
        log_format: f.log_format.clone(),
        forward_headers: f.forward_headers.clone(),
        auth: access.auth_file(),
        tls: access.tls_file(),
    };
    match ProxyConfig::resolve(Some(c.path), proxy_file, &ProxyOverrides::default()) {
        Ok(proxy) => {
            fits_memory(c, &proxy, &resources.limits_memory, f);
            Ok(Some(Sidecar {
                image: sidecar_image,
                port: port.unwrap_or(0),
                port_name,
                resources,
                proxy,
                native: f.native.unwrap_or(false),
                token_secret: access.token,
                tls: access.tls,
            }))
        }
        Err(ConfigError::Invalid { problems }) => {
            let prefixed = problems
                .into_iter()
                .map(|p| Problem { field: format!("sidecar.{}", p.field), ..p });
            c.problems.0.extend(prefixed);
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// `monitor`: the ServiceMonitor or PodMonitor, with the operator's rules that it applies
/// silently (a timeout longer than the interval drops the monitor) and the sidecar's routes.
pub(super) fn monitor(
    c: &mut Check<'_>,
    f: &MonitorFile,
    app: Option<&String>,
    proxy: Option<&ProxyConfig>,
    tls: bool,
    service: &Service,
) -> Monitor {
    let kind = c.value("monitor.kind", &or_default(&f.kind, "ServiceMonitor".into()), |k| {
        MonitorKind::from_kind(k)
            .ok_or_else(|| format!("`{k}` is not a monitor kind; use ServiceMonitor or PodMonitor"))
    });
    let interval_s = or_default(&f.interval, "30s".into());
    let interval = c.value("monitor.interval", &interval_s, |d| duration::parse(d));
    let timeout = f
        .scrape_timeout
        .as_ref()
        .and_then(|t| c.value("monitor.scrapeTimeout", t, |d| duration::parse(d)));
    if let (Some(i), Some(t), Some(ts)) = (interval, timeout, &f.scrape_timeout)
        && t > i
    {
        c.fail(
            "monitor.scrapeTimeout",
            &ts.referenced,
            format!(
                "`{}` is longer than the interval `{}`; prometheus-operator drops such a monitor \
                 without a word. Use a timeout no longer than the interval",
                ts.value, interval_s.value
            ),
        );
    }
    let want = if tls { "https" } else { "http" };
    if let Some(scheme) = &f.scheme
        && scheme.value != want
    {
        let why = if tls {
            "the sidecar serves TLS (sidecar.tls), so the scheme must be https"
        } else {
            "the sidecar serves plain http, so the scheme must be http (or set sidecar.tls)"
        };
        c.fail("monitor.scheme", &scheme.referenced, format!("`{}`: {why}", scheme.value));
    }
    let path_s = or_default(&f.path, "/prometheus".into());
    if let Some(proxy) = proxy
        && !proxy.routes.iter().any(|r| r.public == path_s.value)
    {
        let public: Vec<&str> = proxy.routes.iter().map(|r| r.public.as_str()).collect();
        c.fail(
            "monitor.path",
            &path_s.referenced,
            format!(
                "`{}` is not one of the sidecar's routes ({}); Prometheus would get 404. Add a \
                 route or pick one of these",
                path_s.value,
                public.join(", ")
            ),
        );
    }
    let namespace = c.label_name("monitor.namespace", &f.namespace).unwrap_or_default();
    let monitor = Monitor {
        kind: kind.unwrap_or(MonitorKind::ServiceMonitor),
        name: match &f.name {
            Some(n) => {
                c.value("monitor.name", n, |n| names::dns1123_subdomain(n).map(|()| n.clone()))
            }
            None => app.cloned(),
        }
        .unwrap_or_default(),
        namespace,
        labels: c.labels("monitor.labels", &f.labels, true),
        job_label: f.job_label.as_ref().and_then(|j| {
            c.value("monitor.jobLabel", j, |k| names::label_key(k).map(|()| k.clone()))
        }),
        interval: interval_s.value.clone(),
        scrape_timeout: f.scrape_timeout.as_ref().map(|t| t.value.clone()),
        honor_labels: f.honor_labels.unwrap_or(false),
        path: path_s.value.clone(),
        scrape_protocols: scrape_protocols(c, f.scrape_protocols.as_ref()),
        fallback_scrape_protocol: f
            .fallback_scrape_protocol
            .as_ref()
            .and_then(|p| c.value("monitor.fallbackScrapeProtocol", p, |p| scrape_protocol(p))),
        scrape_class: f.scrape_class.as_ref().and_then(|class| {
            c.value("monitor.scrapeClass", class, |n| {
                if n.is_empty() || n.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                    Err(format!(
                        "`{n}` is not a scrape class name; use the name of one of the Prometheus \
                         object's spec.scrapeClasses, e.g. istio-mtls"
                    ))
                } else {
                    Ok(n.clone())
                }
            })
        }),
    };
    if let (Some(job), MonitorKind::ServiceMonitor) = (&monitor.job_label, monitor.kind)
        && !service.labels.contains_key(job)
    {
        let loc = f.job_label.as_ref().map_or(Location::UNKNOWN, |j| j.referenced);
        c.fail(
            "monitor.jobLabel",
            &loc,
            format!(
                "the Service has no label `{job}`, so the job would fall back to the Service \
                 name; add it to service.labels or drop jobLabel"
            ),
        );
    }
    monitor
}

/// `monitor.scrapeProtocols`: each one of the operator's protocols, none twice.
fn scrape_protocols(c: &mut Check<'_>, f: Option<&S<Vec<S<String>>>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, p) in f.map(|l| l.value.as_slice()).unwrap_or_default().iter().enumerate() {
        let field = format!("monitor.scrapeProtocols[{i}]");
        if out.contains(&p.value) {
            c.fail(&field, &p.referenced, format!("`{}` is listed twice", p.value));
        } else if let Some(p) = c.value(&field, p, |p| scrape_protocol(p)) {
            out.push(p);
        }
    }
    out
}

fn scrape_protocol(p: &str) -> Result<String, String> {
    if crate::operator::SCRAPE_PROTOCOLS.contains(&p) {
        Ok(p.to_string())
    } else {
        Err(format!(
            "`{p}` is not a scrape protocol; use one of {}",
            crate::operator::SCRAPE_PROTOCOLS.join(", ")
        ))
    }
}

/// `istio`: how the mesh is told to leave the metrics port alone, on the data plane it runs.
/// Without `mode`, the exclusion that works there: the PeerAuthentication alone under ambient
/// (ztunnel ignores the pod annotation), the annotation under sidecar mode, and both when the
/// data plane is not said. `exclude-annotation` under ambient is refused, naming both keys.
pub(super) fn istio(c: &mut Check<'_>, f: &IstioFile) -> (IstioMode, Option<Dataplane>) {
    let dataplane = f.dataplane.as_ref().and_then(|d| {
        c.value("istio.dataplane", d, |d| {
            Dataplane::from_name(d).ok_or_else(|| {
                format!(
                    "`{d}` is not an Istio data plane; use sidecar or ambient (or leave it out when \
                     it is not known: both exclusions are rendered)"
                )
            })
        })
    });
    let default = match dataplane {
        Some(Dataplane::Ambient) => "peer-authentication",
        Some(Dataplane::Sidecar) => "exclude-annotation",
        None => "both",
    };
    let mode_s = or_default(&f.mode, default.into());
    let mode = c
        .value("istio.mode", &mode_s, |m| {
            IstioMode::from_name(m).ok_or_else(|| {
                format!(
                    "`{m}` is not an Istio mode; use exclude-annotation, peer-authentication, both \
                     or none"
                )
            })
        })
        .unwrap_or(IstioMode::None);
    if mode == IstioMode::ExcludeAnnotation && dataplane == Some(Dataplane::Ambient) {
        c.fail(
            "istio.mode",
            &mode_s.referenced,
            "`exclude-annotation` does nothing under istio.dataplane: ambient (ztunnel ignores the \
             pod annotation, so the metrics port stays behind STRICT mTLS); set istio.mode to \
             peer-authentication or both"
                .into(),
        );
    }
    (mode, dataplane)
}

/// `networkPolicy`: on by default, admitting the metrics port from the monitor's namespace.
pub(super) fn network_policy(
    c: &mut Check<'_>,
    f: &NetworkPolicyFile,
    monitor_namespace: &str,
) -> NetworkPolicy {
    let default_ns_labels =
        Labels::from([("kubernetes.io/metadata.name".to_string(), monitor_namespace.to_string())]);
    NetworkPolicy {
        enabled: f.enabled.unwrap_or(true),
        namespace_labels: f
            .namespace_labels
            .as_ref()
            .map(|l| c.labels("networkPolicy.namespaceLabels", l, true))
            .unwrap_or(default_ns_labels),
        pod_labels: f
            .pod_labels
            .as_ref()
            .map(|l| c.labels("networkPolicy.podLabels", l, false))
            .unwrap_or_default(),
    }
}

fn image(s: &String) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!(
            "`{s}` is not an image reference; write it as registry.example.com/team/app:1.2.3"
        ))
    } else {
        Ok(s.clone())
    }
}

fn probe_path(s: &str) -> Result<String, String> {
    proxy::check_path(s).map(|()| s.to_string())
}

/// The sidecar's optional access settings, as Secrets to mount and the files the sidecar reads.
struct SidecarAccess {
    token: Option<SecretKey>,
    allowed_clients: Option<S<Vec<S<String>>>>,
    tls: Option<SidecarTls>,
}

impl SidecarAccess {
    fn auth_file(&self) -> Option<proxy::access::AuthFile> {
        let derived = |v: String| Spanned::new(v, Location::UNKNOWN, Location::UNKNOWN);
        (self.token.is_some() || self.allowed_clients.is_some()).then(|| proxy::access::AuthFile {
            bearer_token_file: self
                .token
                .as_ref()
                .map(|t| derived(format!("{}/{}", mounts::TOKEN, t.key))),
            allowed_clients: self.allowed_clients.clone(),
        })
    }

    fn tls_file(&self) -> Option<proxy::access::TlsFile> {
        let derived = |v: String| Some(Spanned::new(v, Location::UNKNOWN, Location::UNKNOWN));
        self.tls.as_ref().map(|t| proxy::access::TlsFile {
            cert_file: derived(format!("{}/tls.crt", mounts::TLS)),
            key_file: derived(format!("{}/tls.key", mounts::TLS)),
            client_ca_file: t
                .client_ca
                .as_ref()
                .and_then(|ca| derived(format!("{}/{}", mounts::CLIENT_CA, ca.key))),
        })
    }
}

/// A Secret's key name: what Kubernetes allows in `data`.
fn secret_key(k: &String) -> Result<String, String> {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && k != "."
        && k != "..";
    if ok {
        Ok(k.clone())
    } else {
        Err(format!("`{k}` is not a Secret key; use letters, digits, -, _ and ."))
    }
}

fn secret_ref(c: &mut Check<'_>, field: &str, f: &SecretKeyFile) -> Option<SecretKey> {
    let name = c.value(&format!("{field}.name"), &f.name, |n| {
        names::dns1123_subdomain(n).map(|()| n.clone())
    });
    let key = c.value(&format!("{field}.key"), &f.key, secret_key);
    Some(SecretKey { name: name?, key: key? })
}

fn access(c: &mut Check<'_>, f: &SidecarFile) -> SidecarAccess {
    let token = f
        .auth
        .as_ref()
        .and_then(|a| a.bearer_token_secret.as_ref())
        .and_then(|t| secret_ref(c, "sidecar.auth.bearerTokenSecret", t));
    let allowed_clients = f.auth.as_ref().and_then(|a| a.allowed_clients.clone());
    let tls = f.tls.as_ref().and_then(|t| {
        let secret = c.value("sidecar.tls.secret", &t.secret, |n| {
            names::dns1123_subdomain(n).map(|()| n.clone())
        });
        let server_name = c.value("sidecar.tls.serverName", &t.server_name, |n| {
            names::dns1123_subdomain(n)
                .map(|()| n.clone())
                .map_err(|e| format!("{e}; give a DNS name the sidecar's certificate carries"))
        });
        let ca = secret_ref(c, "sidecar.tls.caSecret", &t.ca_secret);
        let client_ca = t
            .client_ca_secret
            .as_ref()
            .and_then(|ca| secret_ref(c, "sidecar.tls.clientCASecret", ca));
        let client_cert_secret = t.client_cert_secret.as_ref().and_then(|n| {
            c.value("sidecar.tls.clientCertSecret", n, |n| {
                names::dns1123_subdomain(n).map(|()| n.clone())
            })
        });
        match (&t.client_ca_secret, &t.client_cert_secret) {
            (Some(ca), None) => c.fail(
                "sidecar.tls.clientCertSecret",
                &ca.name.referenced,
                "with clientCASecret the sidecar demands a client certificate: name the \
                 kubernetes.io/tls Secret in the monitor's namespace that holds Prometheus's"
                    .into(),
            ),
            (None, Some(cert)) => c.fail(
                "sidecar.tls.clientCASecret",
                &cert.referenced,
                "a client certificate is sent only where the sidecar checks one: give \
                 clientCASecret, the CA that signed it, or leave clientCertSecret out"
                    .into(),
            ),
            _ => {}
        }
        Some(SidecarTls {
            secret: secret?,
            server_name: server_name?,
            ca: ca?,
            client_ca,
            client_cert_secret,
        })
    });
    SidecarAccess { token, allowed_clients, tls }
}
