//! The protobuf exposition (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`): length-delimited `MetricFamily` messages, the only format that carries
//! native histograms. The messages are Prometheus's own `prompb/io/prometheus/client/metrics.proto`,
//! declared here with prost's derive; what a user needs back is what the text checker reports:
//! families and samples, native histograms counted apart, and why a body would be refused.

use prost::Message;

use crate::exposition::{Exposition, Family};
use crate::promql::{self, Version};

/// `io.prometheus.client.LabelPair`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `io.prometheus.client.MetricFamily`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
    #[prost(string, optional, tag = "5")]
    pub unit: Option<String>,
}

/// `io.prometheus.client.Metric`.
#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Value>,
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Value>,
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "5")]
    pub untyped: Option<Value>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
    #[prost(int64, optional, tag = "6")]
    pub timestamp_ms: Option<i64>,
}

/// `Gauge`, `Counter` and `Untyped` share their first field, the value (the rest is skipped).
#[derive(Clone, PartialEq, Message)]
pub struct Value {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

/// `io.prometheus.client.Summary` (quantiles only; count and sum are skipped).
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
}

/// `io.prometheus.client.Quantile`.
#[derive(Clone, PartialEq, Message)]
pub struct Quantile {
    #[prost(double, optional, tag = "1")]
    pub quantile: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
}

/// `io.prometheus.client.Histogram`: classic buckets and the native histogram's fields.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "4")]
    pub sample_count_float: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "10")]
    pub negative_delta: Vec<i64>,
    #[prost(double, repeated, tag = "11")]
    pub negative_count: Vec<f64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
    #[prost(double, repeated, tag = "14")]
    pub positive_count: Vec<f64>,
}

/// `io.prometheus.client.Bucket` (the upper bound; counts are skipped).
#[derive(Clone, PartialEq, Message)]
pub struct Bucket {
    #[prost(double, optional, tag = "2")]
    pub upper_bound: Option<f64>,
}

/// `io.prometheus.client.BucketSpan`.
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
}

const TYPES: [&str; 6] = ["counter", "gauge", "summary", "untyped", "histogram", "gaugehistogram"];

impl Histogram {
    /// Whether this carries a native histogram: a schema, or any span (Prometheus's rule; an empty
    /// native histogram has a no-op positive span).
    pub fn is_native(&self) -> bool {
        self.schema.is_some()
            || !self.positive_span.is_empty()
            || !self.negative_span.is_empty()
            || self.zero_threshold.is_some()
    }
}

/// What a protobuf body holds, or why Prometheus would refuse it.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub exposition: Exposition,
    /// Series that are native histograms (each one sample in Prometheus's count).
    pub native_histograms: usize,
    /// The sidecar's `meshscrape_merge_target_up` samples: (target, value).
    pub merge_targets: Vec<(String, f64)>,
}

/// The family a merged route's scrape ends with (see meshscrape-proxy's `merge`).
pub const MERGE_TARGET_UP: &str = "meshscrape_merge_target_up";

/// Decodes length-delimited `MetricFamily` messages; checks names by `version`'s rules and that
/// each metric carries the field its family's type names.
pub fn decode(mut body: &[u8], version: Version) -> Result<Decoded, String> {
    let mut out = Decoded::default();
    let mut index = 0;
    while !body.is_empty() {
        index += 1;
        let family = MetricFamily::decode_length_delimited(&mut body)
            .map_err(|e| format!("message {index} does not decode as a MetricFamily: {e}"))?;
        let name = family.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(format!("message {index}: the family has no name"));
        }
        if version == Version::V2 && !promql::is_legacy_metric_name(&name) {
            return Err(format!("family `{name}`: Prometheus 2 cannot hold this name"));
        }
        let kind = family.r#type.unwrap_or(0);
        let type_name = usize::try_from(kind)
            .ok()
            .and_then(|k| TYPES.get(k))
            .ok_or_else(|| format!("family `{name}`: unknown metric type {kind}"))?;
        let mut samples = 0;
        for (i, m) in family.metric.iter().enumerate() {
            let field = match *type_name {
                "counter" => m.counter.as_ref().map(|_| 1),
                "gauge" => m.gauge.as_ref().map(|_| 1),
                "untyped" => m.untyped.as_ref().map(|_| 1),
                "summary" => m.summary.as_ref().map(|s| s.quantile.len() + 2),
                _ => m.histogram.as_ref().map(|h| {
                    if h.is_native() {
                        // One sample; classic buckets beside it are kept only when the monitor
                        // asks for them (scrapeClassicHistograms).
                        out.native_histograms += 1;
                        1
                    } else {
                        // _bucket series (the +Inf one added when absent), _sum and _count.
                        let inf =
                            h.bucket.last().and_then(|b| b.upper_bound) == Some(f64::INFINITY);
                        h.bucket.len() + usize::from(!inf) + 2
                    }
                }),
            };
            samples += field.ok_or_else(|| {
                format!("family `{name}` is a {type_name}, but its metric {i} carries no {type_name} value")
            })?;
            for l in &m.label {
                let label = l.name.as_deref().unwrap_or_default();
                if label.is_empty()
                    || (version == Version::V2 && !promql::is_legacy_label_name(label))
                {
                    return Err(format!("family `{name}`: `{label}` is not a label name"));
                }
            }
        }
        out.exposition.samples += samples;
        if name == MERGE_TARGET_UP {
            for m in &family.metric {
                let target = m.label.iter().find(|l| l.name.as_deref() == Some("target"));
                let value = m.gauge.as_ref().and_then(|g| g.value);
                if let (Some(target), Some(value)) = (target, value) {
                    out.merge_targets.push((target.value.clone().unwrap_or_default(), value));
                }
            }
        }
        let kind = Some((*type_name).to_string());
        if out.exposition.families.insert(name.clone(), Family { kind, samples }).is_some()
            && !out.exposition.duplicates.contains(&name)
        {
            out.exposition.duplicates.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delimited(families: &[MetricFamily]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in families {
            f.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    fn family(name: &str, kind: i32, metric: Vec<Metric>) -> MetricFamily {
        MetricFamily { name: Some(name.into()), help: None, r#type: Some(kind), metric, unit: None }
    }

    fn native() -> Histogram {
        Histogram {
            sample_count: Some(3),
            schema: Some(3),
            zero_threshold: Some(1e-128),
            positive_span: vec![BucketSpan { offset: Some(0), length: Some(2) }],
            positive_delta: vec![1, 1],
            ..Default::default()
        }
    }

    #[test]
    fn counts_families_samples_and_native_histograms() {
        let counter = Metric { counter: Some(Value { value: Some(1.0) }), ..Default::default() };
        let classic = Histogram {
            bucket: vec![Bucket { upper_bound: Some(0.1) }, Bucket { upper_bound: Some(1.0) }],
            ..Default::default()
        };
        let body = delimited(&[
            family("requests_total", 0, vec![counter.clone(), counter]),
            family(
                "latency_seconds",
                4,
                vec![Metric { histogram: Some(native()), ..Default::default() }],
            ),
            family(
                "size_bytes",
                4,
                vec![Metric { histogram: Some(classic), ..Default::default() }],
            ),
        ]);
        let d = decode(&body, Version::V3).unwrap();
        assert_eq!(d.exposition.families.len(), 3);
        assert_eq!(d.exposition.families["requests_total"].samples, 2);
        assert_eq!(d.exposition.families["latency_seconds"].samples, 1);
        // Two buckets, the implicit +Inf one, _sum and _count.
        assert_eq!(d.exposition.families["size_bytes"].samples, 5);
        assert_eq!((d.exposition.samples, d.native_histograms), (8, 1));
    }

    #[test]
    fn refuses_what_prometheus_would_and_says_where() {
        let gauge = Metric { gauge: Some(Value { value: Some(1.0) }), ..Default::default() };
        let err =
            decode(&delimited(&[family("x", 0, vec![gauge.clone()])]), Version::V3).unwrap_err();
        assert!(err.contains("is a counter, but its metric 0 carries no counter value"), "{err}");
        let err = decode(&delimited(&[family("", 1, vec![])]), Version::V3).unwrap_err();
        assert!(err.contains("no name"), "{err}");
        let dotted = delimited(&[family("my.dotted", 1, vec![gauge])]);
        assert!(decode(&dotted, Version::V3).is_ok());
        assert!(decode(&dotted, Version::V2).unwrap_err().contains("Prometheus 2 cannot hold"));
        let mut cut = delimited(&[family("x", 1, vec![])]);
        cut.truncate(cut.len() - 1);
        assert!(decode(&cut, Version::V3).unwrap_err().contains("does not decode"));
        assert!(decode(b"# TYPE x counter\n", Version::V3).is_err());
    }
}
