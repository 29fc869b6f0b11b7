//! Every rendered document is parsed back into its typed form: k8s-openapi for the core kinds,
//! meshscrape-common's types for the custom resources. Fields the typed form does not know are
//! errors, as they would be under `kubectl apply --validate=strict`.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use meshscrape_common::crd::{Certificate, Issuer, PeerAuthentication, PodMonitor, ServiceMonitor};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A rendered object in its typed form.
#[derive(Clone, Debug)]
pub enum Object {
    ConfigMap(Box<ConfigMap>),
    Deployment(Box<Deployment>),
    Service(Box<Service>),
    NetworkPolicy(Box<NetworkPolicy>),
    ServiceMonitor(Box<ServiceMonitor>),
    PodMonitor(Box<PodMonitor>),
    PeerAuthentication(Box<PeerAuthentication>),
    Secret(Box<Secret>),
    ServiceAccount(Box<ServiceAccount>),
    MutatingWebhookConfiguration(Box<MutatingWebhookConfiguration>),
    Certificate(Box<Certificate>),
    Issuer(Box<Issuer>),
}

/// Parses one YAML document into its typed form; `Err` says what is wrong.
pub fn parse(text: &str) -> Result<(Object, Value), String> {
    let value: Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("not valid YAML: {}", e.without_snippet()))?;
    let kind = value.get("kind").and_then(Value::as_str).ok_or("the document has no kind")?;
    let object = match kind {
        "ConfigMap" => Object::ConfigMap(strict(&value)?),
        "Deployment" => Object::Deployment(strict(&value)?),
        "Service" => Object::Service(strict(&value)?),
        "NetworkPolicy" => Object::NetworkPolicy(strict(&value)?),
        "ServiceMonitor" => Object::ServiceMonitor(strict(&value)?),
        "PodMonitor" => Object::PodMonitor(strict(&value)?),
        "PeerAuthentication" => Object::PeerAuthentication(strict(&value)?),
        "Secret" => Object::Secret(strict(&value)?),
        "ServiceAccount" => Object::ServiceAccount(strict(&value)?),
        "MutatingWebhookConfiguration" => Object::MutatingWebhookConfiguration(strict(&value)?),
        "Certificate" => Object::Certificate(strict(&value)?),
        "Issuer" => Object::Issuer(strict(&value)?),
        other => return Err(format!("kind {other} is not one meshscrape-gen renders")),
    };
    Ok((object, value))
}

/// Deserializes, then serializes back: a field that does not survive the round trip is one the
/// typed form does not have.
fn strict<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Box<T>, String> {
    let typed = T::deserialize(value).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match unknown_field(value, &back, String::new()) {
        Some(path) => {
            Err(format!("`{path}` is not a field of this kind (Kubernetes 1.33 API, strict)"))
        }
        None => Ok(Box::new(typed)),
    }
}

/// The first path present in `orig` but missing from `back`.
pub fn unknown_field(orig: &Value, back: &Value, path: String) -> Option<String> {
    match (orig, back) {
        (Value::Object(o), Value::Object(b)) => o.iter().find_map(|(k, v)| {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            match b.get(k) {
                None if !v.is_null() => Some(p),
                None => None,
                Some(bv) => unknown_field(v, bv, p),
            }
        }),
        (Value::Array(o), Value::Array(b)) => o
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (ov, bv))| unknown_field(ov, bv, format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_field_the_api_does_not_have() {
        let err = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: \
                [{port: 80, targetPort: 8080, tagretPort: 1}]\n",
        )
        .unwrap_err();
        assert!(err.contains("spec.ports[0].tagretPort"), "{err}");
    }

    #[test]
    fn rejects_wrong_types_and_unknown_kinds() {
        assert!(
            parse(
                "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: \
            {ports: [{port: http}]}\n"
            )
            .is_err()
        );
        assert!(
            parse("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
                .unwrap_err()
                .contains("kind Pod")
        );
        let err = parse(
            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: \
            {name: x}\nspec: {selector: {}, endpoints: [{port: p, intervall: 30s}]}\n",
        )
        .unwrap_err();
        assert!(err.contains("intervall"), "{err}");
    }

    #[test]
    fn accepts_a_valid_deployment() {
        let (obj, _) = parse(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: \
                {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n",
        )
        .unwrap();
        assert!(matches!(obj, Object::Deployment(_)));
    }
}
