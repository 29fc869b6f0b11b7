//! Reading the input: files, folders (recursively, `*.yaml`/`*.yml`) or `-` for stdin, each
//! document an object, `kind: List` unpacked.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Objects;
use crate::error::Error;

/// Reads files, folders (recursively, `*.yaml`/`*.yml`) or `-` for stdin.
pub fn load(
    paths: &[String],
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<Objects, Error> {
    let mut texts = Vec::new();
    let mut seen = HashSet::new();
    let mut stdin = Some(stdin);
    for p in paths {
        if p == "-" {
            let read = stdin.take().ok_or(Error::StdinTwice)?;
            texts.push(("stdin".to_string(), read().map_err(Error::Stdin)?));
        } else {
            collect(Path::new(p), &mut texts, &mut seen)?;
        }
    }
    let mut docs = Vec::new();
    for (name, text) in texts {
        let parsed: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, options())
            .map_err(|e| match e {
                serde_saphyr::Error::Budget { .. } => Error::TooLarge { path: name.clone() },
                e => {
                    Error::NotYaml { path: name.clone(), message: e.without_snippet().to_string() }
                }
            })?;
        for doc in parsed {
            // `kind: List` (kubectl get -o yaml) holds its objects in items.
            match doc.get("kind").and_then(Value::as_str) {
                Some("List") => docs.extend(doc["items"].as_array().cloned().unwrap_or_default()),
                _ if doc.is_object() => docs.push(doc),
                _ => {}
            }
        }
    }
    Ok(Objects::from_values(docs))
}

/// The parser's bounds, set far above what a real cluster dump reaches (serde-saphyr's default
/// of 1,024 documents refused gen's own output for 300 namespaces and most `kubectl get -A -o
/// yaml`), and still a bound against hostile input: 200,000 documents, 50 million nodes,
/// 512 MiB of scalar text.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 200_000,
            max_nodes: 50_000_000,
            max_events: 200_000_000,
            max_total_scalar_bytes: 512 << 20,
            max_reader_input_bytes: Some(1 << 30),
        },
    }
}

/// Reads `path`, or every YAML file under it. Symbolic links are followed, but each folder and file
/// is read once, by its canonical path, so a link back up the tree is no endless walk and a file
/// linked twice is not counted twice.
fn collect(
    path: &Path,
    out: &mut Vec<(String, String)>,
    seen: &mut HashSet<PathBuf>,
) -> Result<(), Error> {
    let read = |source| Error::Read { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(read)?;
    if !seen.insert(std::fs::canonicalize(path).map_err(read)?) {
        return Ok(());
    }
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(read)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() || e.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                collect(&e, out, seen)?;
            }
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    out.push((path.display().to_string(), text));
    Ok(())
}
