//! Where rendered objects go: one multi-document stream, or one folder per namespace with a file
//! per object and a `kustomization.yaml`.

use std::path::{Path, PathBuf};

use crate::{GenError, Rendered};

/// Every object as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn stream(rendered: &[Rendered]) -> String {
    let mut out = String::new();
    for r in rendered {
        out.push_str("---\n# Source: ");
        out.push_str(&r.source);
        out.push('\n');
        out.push_str(&r.text);
    }
    out
}

/// The files `write_dir` would write, relative to the output folder, with their contents.
pub fn files(rendered: &[Rendered]) -> Vec<(PathBuf, String)> {
    let mut namespaces: Vec<&str> = Vec::new();
    for r in rendered {
        if !namespaces.contains(&r.namespace.as_str()) {
            namespaces.push(&r.namespace);
        }
    }
    let mut out = Vec::new();
    for ns in namespaces {
        let mut resources = Vec::new();
        for r in rendered.iter().filter(|r| r.namespace == ns) {
            let file = format!("{}-{}.yaml", r.kind.to_ascii_lowercase(), r.name);
            out.push((Path::new(ns).join(&file), format!("# Source: {}\n{}", r.source, r.text)));
            resources.push(file);
        }
        let mut k = String::from(
            "# Written by meshscrape-gen; apply with: kubectl apply -k .\napiVersion: \
                kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
        );
        for file in resources {
            k.push_str(&format!("  - {file}\n"));
        }
        out.push((Path::new(ns).join("kustomization.yaml"), k));
    }
    out
}

/// Writes every file under `dir`, all or nothing as far as the file system allows: every file is
/// first written under a temporary name beside its final one, and only when all of them are
/// written are they renamed into place. A failure on the way (a full disk, a read-only folder)
/// removes the temporary files and leaves `dir` as it was, apart from folders it had to create.
pub fn write_dir(dir: &Path, rendered: &[Rendered]) -> Result<Vec<PathBuf>, GenError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| GenError::Io { path, source }
    };
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let stage = |staged: &mut Vec<(PathBuf, PathBuf)>| -> Result<(), GenError> {
        for (rel, text) in files(rendered) {
            let path = dir.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let tmp = path.with_extension("yaml.tmp");
            std::fs::write(&tmp, text).map_err(io(&tmp))?;
            staged.push((tmp, path));
        }
        Ok(())
    };
    if let Err(e) = stage(&mut staged) {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    let mut written = Vec::new();
    for (i, (tmp, path)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            // Too late to undo the renames before it; at least leave no temporary files.
            for (tmp, _) in &staged[i..] {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(io(path)(e));
        }
        written.push(path.clone());
    }
    Ok(written)
}
