//! Validation of objects against a CustomResourceDefinition's structural schema, as the API
//! server does with strict field validation: types, required fields, enums, bounds, and unknown
//! fields (a field the schema does not list is an error unless the schema preserves unknown
//! fields). Not evaluated: `pattern`, `format` and CEL `x-kubernetes-validations`.

use serde_json::Value;

/// Finds the `openAPIV3Schema` of `kind` at `version` among CRD documents.
pub fn crd_schema<'a>(crds: &'a [Value], kind: &str, version: &str) -> Option<&'a Value> {
    crds.iter()
        .filter(|c| c.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind))
        .flat_map(|c| c.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten())
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
}

/// Every violation of `schema` in `doc`, as `path: problem`. Empty means valid.
pub fn validate(schema: &Value, doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, doc, "", &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn walk(schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    let at = if path.is_empty() { "(root)" } else { path };
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(v.is_i64() || v.is_u64() || v.is_string()) {
            out.push(format!("{at}: must be an integer or a string"));
        }
        return;
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(|s| validate(s, v).is_empty())
    {
        out.push(format!("{at}: matches none of the allowed forms"));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let allowed: Vec<String> = options.iter().map(Value::to_string).collect();
        out.push(format!("{at}: {v} is not one of {}", allowed.join(", ")));
    }
    let preserve =
        schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(map) = v.as_object() else {
                out.push(format!("{at}: must be an object"));
                return;
            };
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, val) in map {
                let p = join(path, k);
                // The API server handles these itself; CRDs describe them loosely or not at all.
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match (props.and_then(|ps| ps.get(k)), additional) {
                    (Some(s), _) => walk(s, val, &p, out),
                    (None, Some(Value::Object(s))) => walk(&Value::Object(s.clone()), val, &p, out),
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if preserve => {}
                    (None, _) => out.push(format!("{p}: unknown field")),
                }
            }
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(req) {
                    out.push(format!("{}: required field is missing", join(path, req)));
                }
            }
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
                && (map.len() as u64) < min
            {
                out.push(format!("{at}: needs at least {min} entries"));
            }
        }
        Some("array") => {
            let Some(items) = v.as_array() else {
                out.push(format!("{at}: must be a list"));
                return;
            };
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Some("string") if !v.is_string() => out.push(format!("{at}: must be a string")),
        Some("boolean") if !v.is_boolean() => out.push(format!("{at}: must be true or false")),
        Some("number") if !v.is_number() => out.push(format!("{at}: must be a number")),
        Some("integer") => match v.as_i64() {
            None => out.push(format!("{at}: must be an integer")),
            Some(n) => {
                if let Some(min) = schema.get("minimum").and_then(Value::as_i64)
                    && n < min
                {
                    out.push(format!("{at}: {n} is below the minimum {min}"));
                }
                if let Some(max) = schema.get("maximum").and_then(Value::as_i64)
                    && n > max
                {
                    out.push(format!("{at}: {n} is above the maximum {max}"));
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["port"], "properties": {
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "target": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}
            }},
            "metadata": {"type": "object"}
        }})
    }

    #[test]
    fn accepts_a_valid_object_and_ignores_metadata_contents() {
        let doc = json!({"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"port": 80, "mode": "A", "target": "http", "labels": {"k": "v"}, "items": [{"n": "1"}]}});
        assert_eq!(validate(&schema(), &doc), Vec::<String>::new());
    }

    #[test]
    fn reports_each_violation_with_its_path() {
        let doc = json!({"spec": {"port": 70000, "mode": "C", "target": true, "labels": {"k": 1}, "items": [{"n": "1", "m": 2}], "extra": 1}});
        let errors = validate(&schema(), &doc);
        for needle in [
            "spec.port: 70000 is above the maximum 65535",
            "spec.mode: \"C\" is not one of",
            "spec.target: must be an integer or a string",
            "spec.labels.k: must be a string",
            "spec.items[0].m: unknown field",
            "spec.extra: unknown field",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(needle)),
                "missing {needle:?} in {errors:#?}"
            );
        }
        assert!(validate(&schema(), &json!({"spec": {}}))[0].contains("spec.port: required"));
    }
}
