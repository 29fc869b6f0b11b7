//! Systematic mutations of the two inputs the verifier reads from outside: scrape bodies (any
//! target may answer anything) and manifests (whatever files a user points it at).
//! - the exposition parser never panics, and a rejection is one short line naming the line number;
//! - `manifests` never panics on any field of the generated example replaced by a value of the
//!   wrong type or removed, every finding stays one readable line, and the JSON report parses.

use std::panic::{AssertUnwindSafe, catch_unwind};

use meshscrape_verify::exposition::parse;
use meshscrape_verify::manifests::{Objects, Options, check};
use meshscrape_verify::report::{Format, Status};
use serde_json::Value;

/// A body as the seed's app and real exporters write it: HELP and TYPE, escaped label values,
/// a trailing comma, special values, a timestamp, a histogram.
pub(crate) const TEXT: &str = r#"# HELP com_example_Endpoint_handle Request latency.
# TYPE com_example_Endpoint_handle summary
com_example_Endpoint_handle{quantile="0.5",} 1.5E-4
com_example_Endpoint_handle{quantile="0.99",path="/a\"b\\c\n"} 4.1210555000000096E-4
com_example_Endpoint_handle_count 3 1700000000000
com_example_Endpoint_handle_sum +Inf
# TYPE http_seconds histogram
http_seconds_bucket{le="0.1"} 1
http_seconds_bucket{le="+Inf"} 2
http_seconds_sum NaN
http_seconds_count 2
up 1
"#;

pub(crate) const OPENMETRICS: &str = "# TYPE build info\nbuild_info{version=\"1.0\"} 1\n# TYPE req \
    counter\nreq_total 3 # {trace_id=\"a\"} 1 1.5\nreq_created 1.7e9\n# EOF\n";

/// Pieces that exposition parsers trip on.
const TOKENS: &[&str] = &[
    "{", "}", "\"", "\\", ",", "=", " ", "\t", "\r", "\n", "#", "# EOF\n", "# TYPE ", "_bucket",
    "le=", "1e309", "-", "\u{0}", "é", "🦀",
];

pub(crate) fn mutations(valid: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = valid.lines().collect();
    for i in 0..lines.len() {
        let mut without = lines.clone();
        without.remove(i);
        out.push(without.join("\n") + "\n");
        let mut doubled = lines.clone();
        doubled.insert(i, lines[i]);
        out.push(doubled.join("\n") + "\n");
    }
    for (at, c) in valid.char_indices() {
        let mut dropped = valid.to_string();
        dropped.remove(at);
        out.push(dropped);
        // Tokens go in at the places where the grammar changes state.
        if at == 0 || matches!(c, ' ' | '{' | '}' | ',' | '=' | '"' | '\n') {
            for token in TOKENS {
                let mut inserted = valid.to_string();
                inserted.insert_str(at, token);
                out.push(inserted);
            }
        }
    }
    // One very long line, name and label value.
    out.push(format!("{}{valid}", "a".repeat(100_000)));
    out.push(valid.replacen("up 1", &format!("up{{l=\"{}\"}} 1", "v".repeat(100_000)), 1));
    out
}

#[test]
fn mangled_scrape_bodies_never_panic_the_parser_and_errors_stay_one_short_line() {
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut rejected = 0;
    for (valid, openmetrics) in [(TEXT, false), (OPENMETRICS, true)] {
        assert!(parse(valid, openmetrics).is_ok(), "the unmutated body must parse");
        for body in mutations(valid) {
            cases += 1;
            match catch_unwind(AssertUnwindSafe(|| parse(&body, openmetrics))) {
                Err(_) => {
                    failures.push(format!("panicked on {:?}", body.escape_debug().to_string()))
                }
                Ok(Err(e)) => {
                    rejected += 1;
                    let message = e.to_string();
                    if message.contains('\n') || message.len() > 300 || e.line == 0 {
                        failures.push(format!(
                            "unreadable error ({} chars): {:.300}",
                            message.len(),
                            message.escape_debug()
                        ));
                    }
                }
                Ok(Ok(_)) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} bodies failed; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    assert!(rejected > cases / 10 && rejected < cases, "rejected {rejected} of {cases}");
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            pointers(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)
        }),
        Value::Array(a) => {
            a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out))
        }
        _ => {}
    }
    out.push(at);
}

/// `docs` with the value at `pointer` in document `doc` replaced (or removed, for `None`).
fn edited(docs: &[Value], doc: usize, pointer: &str, with: Option<&Value>) -> Vec<Value> {
    let mut docs = docs.to_vec();
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", ""));
    let key = key.replace("~1", "/").replace("~0", "~");
    match (docs[doc].pointer_mut(parent), with) {
        (Some(Value::Object(m)), Some(v)) => {
            m.insert(key, v.clone());
        }
        (Some(Value::Object(m)), None) => {
            m.remove(&key);
        }
        (Some(Value::Array(a)), w) => {
            if let Ok(i) = key.parse::<usize>() {
                match w {
                    Some(v) => a[i] = v.clone(),
                    None => {
                        a.remove(i);
                    }
                }
            }
        }
        (None, Some(v)) if pointer.is_empty() => docs[doc] = v.clone(),
        _ => {}
    }
    docs
}

#[test]
fn manifests_with_any_field_of_the_wrong_type_or_missing_never_panic_and_report_readably() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/identity-service.yaml"
    ))
    .unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let options = Options::default();
    let clean = check(&Objects::from_values(docs.clone()), &options);
    assert!(
        !clean.failed(),
        "the unmutated example must pass:\n{}",
        clean.render(Format::Human, false)
    );
    let hostile = [
        Value::Null,
        Value::from(""),
        Value::from(0),
        Value::from(-1),
        Value::from(1.5),
        Value::from(u64::MAX),
        Value::from(true),
        Value::from("x".repeat(300)),
        Value::from("a\nb"),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!([{}]),
    ];
    let (mut cases, mut caught) = (0, 0);
    let mut failures = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let mut all = Vec::new();
        pointers(doc, String::new(), &mut all);
        for pointer in all {
            for with in hostile.iter().map(Some).chain([None]) {
                cases += 1;
                let input = edited(&docs, d, &pointer, with);
                let shown = with.map_or("(removed)".into(), |v| {
                    v.to_string().chars().take(40).collect::<String>()
                });
                let what = format!("document {d} {pointer} = {shown}");
                let Ok(report) = catch_unwind(AssertUnwindSafe(|| {
                    check(&Objects::from_values(input), &options)
                })) else {
                    failures.push(format!("{what}: check panicked"));
                    continue;
                };
                caught += usize::from(report.failed());
                for c in report.checks.iter().filter(|c| c.status != Status::Pass) {
                    let line = format!(
                        "{} {} {} {}",
                        c.message,
                        c.fix.as_deref().unwrap_or(""),
                        c.object.as_deref().unwrap_or(""),
                        c.field.as_deref().unwrap_or("")
                    );
                    if c.message.is_empty()
                        || c.fix.as_deref().is_none_or(str::is_empty)
                        || line.contains('\n')
                    {
                        failures.push(format!(
                            "{what}: unreadable finding ({} chars): {:.400}",
                            line.len(),
                            line.escape_debug()
                        ));
                    }
                }
                if serde_json::from_str::<Value>(&report.render(Format::Json, false)).is_err() {
                    failures.push(format!("{what}: the JSON report does not parse"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
    // Many fields (resources, security context, managed-by labels) are no link in the scrape chain,
    // so only some edits must fail; about a fifth do. Far fewer would mean the checks are not
    // reading the input.
    assert!(caught > cases / 6, "only {caught} of {cases} edits were caught");
}
