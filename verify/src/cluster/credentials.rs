//! The credentials a monitor's endpoint gives Prometheus (`scheme`, `tlsConfig`,
//! `authorization`, `bearerTokenSecret`), read from the Secrets and ConfigMaps in the monitor's
//! namespace, so that the cluster check scrapes a sidecar with access rules as Prometheus does.
//! Secrets it may not read are a warning, and the scrape goes on without them.

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use super::read::{Reader, resource};
use crate::error::Error;
use crate::report::{Check, Report};
use crate::tls;

/// How to scrape the monitor's target.
#[derive(Default)]
pub(super) struct Credentials {
    pub(super) https: bool,
    pub(super) tls: Option<tls::Client>,
    pub(super) token: Option<String>,
}

/// Reads what `endpoint` (a monitor's, in namespace `ns`) refers to; `pod_ip` names the pod when
/// the endpoint gives no `serverName` (Prometheus checks the certificate against the address it
/// scrapes).
pub(super) async fn read(
    reader: &Reader<'_>,
    ns: &str,
    monitor_id: &str,
    endpoint: &Value,
    pod_ip: Option<&str>,
    report: &mut Report,
) -> Result<Credentials, Error> {
    let mut out = Credentials {
        https: endpoint.get("scheme").and_then(Value::as_str) == Some("https"),
        ..Default::default()
    };
    let token_ref = endpoint
        .pointer("/authorization/credentials")
        .or_else(|| endpoint.get("bearerTokenSecret"))
        .filter(|v| !v.is_null());
    if let Some(selector) = token_ref {
        out.token = key(reader, ns, selector, false, report)
            .await?
            .map(|t| String::from_utf8_lossy(&t).trim().to_string());
    }
    if !out.https {
        return Ok(out);
    }
    let t = endpoint.get("tlsConfig").unwrap_or(&Value::Null);
    let Some(ca_ref) = t.get("ca").filter(|v| !v.is_null()) else {
        report.push(
            Check::warn(
                "scrape",
                "the monitor gives no tlsConfig.ca, so the check cannot verify the sidecar's \
                 certificate as Prometheus would; scraping over https is skipped",
                "set tlsConfig.ca to the CA that signed the sidecar's certificate",
            )
            .on(monitor_id),
        );
        return Ok(out);
    };
    let Some(ca) = from_source(reader, ns, ca_ref, report).await? else { return Ok(out) };
    let cert = match (t.get("cert").filter(|v| !v.is_null()), t.get("keySecret")) {
        (Some(cert), Some(key_ref)) if !key_ref.is_null() => {
            let cert = from_source(reader, ns, cert, report).await?;
            let key = key(reader, ns, key_ref, true, report).await?;
            cert.zip(key)
        }
        _ => None,
    };
    let server_name = t.get("serverName").and_then(Value::as_str).or(pod_ip);
    let names = tls::Names {
        ca: format!("{monitor_id} tlsConfig.ca"),
        cert: format!("{monitor_id} tlsConfig.cert"),
        key: format!("{monitor_id} tlsConfig.keySecret"),
    };
    match tls::client_from_pem(
        &ca,
        cert.as_ref().map(|(c, k)| (&c[..], &k[..])),
        server_name,
        &names,
    ) {
        Ok(client) => out.tls = Some(client),
        Err(why) => report.push(
            Check::fail("scrape", why, "fix the Secret the monitor's tlsConfig names")
                .on(monitor_id),
        ),
    }
    Ok(out)
}

/// `{secret: {name, key}}` or `{configMap: {name, key}}`.
async fn from_source(
    reader: &Reader<'_>,
    ns: &str,
    source: &Value,
    report: &mut Report,
) -> Result<Option<Vec<u8>>, Error> {
    if let Some(secret) = source.get("secret").filter(|v| !v.is_null()) {
        return key(reader, ns, secret, true, report).await;
    }
    if let Some(cm) = source.get("configMap").filter(|v| !v.is_null()) {
        let (Some(name), Some(k)) =
            (cm.get("name").and_then(Value::as_str), cm.get("key").and_then(Value::as_str))
        else {
            return Ok(None);
        };
        let ar = resource("", "v1", "ConfigMap", "configmaps");
        let found = reader.get_or_warn(&ar, ns, name, report).await?;
        return Ok(found
            .as_ref()
            .and_then(|c| c.pointer(&format!("/data/{}", k.replace('~', "~0").replace('/', "~1"))))
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec()));
    }
    Ok(None)
}

/// One key of a Secret `{name, key}` in `ns`, decoded; a warning when the Secret or key is
/// missing (and `required`), or may not be read.
async fn key(
    reader: &Reader<'_>,
    ns: &str,
    selector: &Value,
    required: bool,
    report: &mut Report,
) -> Result<Option<Vec<u8>>, Error> {
    let (Some(name), Some(k)) =
        (selector.get("name").and_then(Value::as_str), selector.get("key").and_then(Value::as_str))
    else {
        return Ok(None);
    };
    let ar = resource("", "v1", "Secret", "secrets");
    let Some(found) = reader.get_or_warn(&ar, ns, name, report).await? else { return Ok(None) };
    let secret: Option<Secret> = serde_json::from_value(found).ok();
    let value = secret.and_then(|s| s.data).and_then(|d| d.get(k).map(|b| b.0.clone()));
    if value.is_none() && required {
        report.push(
            Check::fail(
                "scrape",
                format!("Secret {ns}/{name} has no key {k}, which the monitor names"),
                "create the key, or point the monitor at the one that holds it",
            )
            .on(format!("Secret/{ns}/{name}")),
        );
    }
    Ok(value)
}
