//! Reading the cluster: objects as `serde_json` values through kube's dynamic API, GET and LIST
//! only. A list the user may not read is a warning in the report, not an error.

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::TypeMeta;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::report::{Check, Report};

pub(super) fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    let api_version =
        if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version,
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub(super) fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => meshscrape_common::error::chain(other),
    }
}

/// Reads objects as `serde_json` values with apiVersion and kind set (list items lack them).
pub(super) struct Reader<'a> {
    pub(super) client: &'a kube::Client,
}

impl Reader<'_> {
    fn api(&self, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    fn value(ar: &ApiResource, mut o: DynamicObject) -> Value {
        o.types = Some(TypeMeta { api_version: ar.api_version.clone(), kind: ar.kind.clone() });
        serde_json::to_value(o).unwrap_or(Value::Null)
    }

    /// `Ok(None)` when it does not exist; `Err` only when the API server cannot be asked at all.
    pub(super) async fn get(
        &self,
        ar: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        match self.api(ar, Some(namespace)).get(name).await {
            Ok(o) => Ok(Some(Self::value(ar, o))),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(None),
            Err(e) => Err(Error::Api {
                action: format!("reading {}/{namespace}/{name}", ar.kind),
                message: api_error(&e),
            }),
        }
    }

    /// Like `get`, but a refusal (403) is a warning in `report` and `Ok(None)`, and a missing
    /// object is a failed check: for Secrets the check needs but may not be allowed to read.
    pub(super) async fn get_or_warn(
        &self,
        ar: &ApiResource,
        namespace: &str,
        name: &str,
        report: &mut Report,
    ) -> Result<Option<Value>, Error> {
        match self.api(ar, Some(namespace)).get(name).await {
            Ok(o) => Ok(Some(Self::value(ar, o))),
            Err(kube::Error::Api(s)) if s.is_forbidden() => {
                report.push(Check::warn(
                    "access",
                    format!("may not read {}/{namespace}/{name}: {}", ar.kind, s.message),
                    format!(
                        "grant get on {} in {namespace} to scrape with the monitor's credentials; \
                         without them the scrape is made as an anonymous client",
                        ar.plural
                    ),
                ));
                Ok(None)
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                report.push(
                    Check::fail(
                        "scrape",
                        format!(
                            "{}/{namespace}/{name}, which the monitor names, does not exist",
                            ar.kind
                        ),
                        "create it: Prometheus cannot scrape without it either",
                    )
                    .on(format!("{}/{namespace}/{name}", ar.kind)),
                );
                Ok(None)
            }
            Err(e) => Err(Error::Api {
                action: format!("reading {}/{namespace}/{name}", ar.kind),
                message: api_error(&e),
            }),
        }
    }

    /// A list; kinds the cluster does not serve are empty. `None` when it may not be read, with a
    /// warning in `report`, so that checks needing it are skipped rather than failed.
    pub(super) async fn list(
        &self,
        ar: &ApiResource,
        namespace: Option<&str>,
        labels: Option<&str>,
        report: &mut Report,
    ) -> Result<Option<Vec<Value>>, Error> {
        let mut lp = ListParams::default();
        if let Some(l) = labels {
            lp = lp.labels(l);
        }
        let scope =
            namespace.map_or("in all namespaces".to_string(), |ns| format!("in namespace {ns}"));
        match self.api(ar, namespace).list(&lp).await {
            Ok(list) => Ok(Some(list.items.into_iter().map(|o| Self::value(ar, o)).collect())),
            Err(kube::Error::Api(s)) if s.is_forbidden() => {
                report.push(Check::warn(
                    "access",
                    format!("may not list {} {scope}: {}", ar.plural, s.message),
                    format!(
                        "grant get and list on {} (kubectl auth can-i list {}); the checks \
                        that need them are skipped",
                        ar.plural, ar.plural
                    ),
                ));
                Ok(None)
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Some(Vec::new())),
            Err(e) => Err(Error::Api {
                action: format!("listing {} {scope}", ar.plural),
                message: api_error(&e),
            }),
        }
    }
}

/// `k=v,k2=v2` from a Service's spec.selector.
pub(super) fn label_selector(selector: &Map<String, Value>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}
