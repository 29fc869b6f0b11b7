//! How prometheus-operator names what it makes of a monitor, in one place: the scrape pool of
//! each endpoint and the `job` label of its targets (`pkg/prometheus/promcfg.go`). The verifier
//! matches Prometheus's targets with these and the e2e tests configure Prometheus with them, so
//! nothing else writes either string.

/// The kind of monitor prometheus-operator turns into a scrape configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorKind {
    /// Selects Services; Prometheus scrapes their endpoints.
    ServiceMonitor,
    /// Selects pods directly.
    PodMonitor,
}

impl MonitorKind {
    /// The kind from an object's `kind` field.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "ServiceMonitor" => Some(MonitorKind::ServiceMonitor),
            "PodMonitor" => Some(MonitorKind::PodMonitor),
            _ => None,
        }
    }

    /// The object's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorKind::ServiceMonitor => "ServiceMonitor",
            MonitorKind::PodMonitor => "PodMonitor",
        }
    }

    /// The field under `spec` that lists its endpoints.
    pub fn endpoints_field(self) -> &'static str {
        match self {
            MonitorKind::ServiceMonitor => "endpoints",
            MonitorKind::PodMonitor => "podMetricsEndpoints",
        }
    }

    /// The scrape pool's prefix: the kind with a lower-case first letter.
    fn pool_prefix(self) -> &'static str {
        match self {
            MonitorKind::ServiceMonitor => "serviceMonitor",
            MonitorKind::PodMonitor => "podMonitor",
        }
    }
}

/// The scrape protocols prometheus-operator's `scrapeProtocols` and `fallbackScrapeProtocol`
/// take (its `ScrapeProtocol` enum, 0.93), as Prometheus's `scrape_protocols` names them.
pub const SCRAPE_PROTOCOLS: [&str; 5] = [
    "PrometheusProto",
    "OpenMetricsText0.0.1",
    "OpenMetricsText1.0.0",
    "PrometheusText0.0.4",
    "PrometheusText1.0.0",
];

/// The scrape pool of endpoint `index` of a monitor: `serviceMonitor/<ns>/<name>/<index>` or
/// `podMonitor/<ns>/<name>/<index>`, Prometheus's `scrapePool` (and the job name in its config).
pub fn scrape_pool(kind: MonitorKind, namespace: &str, name: &str, index: usize) -> String {
    format!("{}/{namespace}/{name}/{index}", kind.pool_prefix())
}

/// The `job` label of a monitor's targets. For a ServiceMonitor it is the Service's name, or the
/// value of the Service label that `jobLabel` names when the Service has it; for a PodMonitor
/// `<ns>/<name>` of the monitor, or the value of the pod label `jobLabel` names.
/// `job_label_value` is that label's value on the target, when `jobLabel` is set and present.
pub fn job(
    kind: MonitorKind,
    monitor_namespace: &str,
    monitor_name: &str,
    service: &str,
    job_label_value: Option<&str>,
) -> String {
    // The operator's relabeling only replaces with a non-empty value (regex `(.+)`).
    if let Some(value) = job_label_value.filter(|v| !v.is_empty()) {
        return value.to_string();
    }
    match kind {
        MonitorKind::ServiceMonitor => service.to_string(),
        MonitorKind::PodMonitor => format!("{monitor_namespace}/{monitor_name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_pools_are_kind_namespace_name_and_endpoint_index() {
        assert_eq!(
            scrape_pool(MonitorKind::ServiceMonitor, "monitoring", "argo-monitor", 0),
            "serviceMonitor/monitoring/argo-monitor/0"
        );
        assert_eq!(
            scrape_pool(MonitorKind::PodMonitor, "monitoring", "argo-monitor", 2),
            "podMonitor/monitoring/argo-monitor/2"
        );
    }

    #[test]
    fn jobs_are_the_service_name_or_the_monitor_for_pods_unless_job_label_says_otherwise() {
        let sm = MonitorKind::ServiceMonitor;
        let pm = MonitorKind::PodMonitor;
        assert_eq!(job(sm, "monitoring", "argo", "identity-service", None), "identity-service");
        assert_eq!(job(sm, "monitoring", "argo", "identity-service", Some("identity")), "identity");
        assert_eq!(job(sm, "monitoring", "argo", "identity-service", Some("")), "identity-service");
        assert_eq!(job(pm, "monitoring", "argo", "identity-service", None), "monitoring/argo");
        assert_eq!(job(pm, "monitoring", "argo", "identity-service", Some("shop")), "shop");
    }

    #[test]
    fn kinds_read_back_from_their_names() {
        for kind in [MonitorKind::ServiceMonitor, MonitorKind::PodMonitor] {
            assert_eq!(MonitorKind::from_kind(kind.as_str()), Some(kind));
        }
        assert_eq!(MonitorKind::from_kind("Service"), None);
    }
}
