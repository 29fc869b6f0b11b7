//! Where rendered objects go: one multi-document stream, or one folder per namespace with a file
//! per object and a `kustomization.yaml`.

use std::path::{Path, PathBuf};

use crate::{GenError, Rendered};

/// Every object as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn stream(rendered: &[Rendered]) -> String {
    rendered.iter().map(|r| Document { source: &r.source, text: &r.text }.to_string()).collect()
}

/// One object as a document of the stream: the separator, where its template came from, the
/// YAML.
pub(crate) struct Document<'a> {
    pub(crate) source: &'a str,
    pub(crate) text: &'a str,
}

impl std::fmt::Display for Document<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "---\n# Source: {}\n{}", self.source, self.text)
    }
}

/// Files written under temporary names beside their final ones, one object at a time, and renamed
/// into place only when every one is written: a failure on the way (a full disk, a read-only
/// folder, a template error in a later namespace) removes the temporary files and leaves the
/// folder as it was, apart from folders it had to create. Holds file names, not contents, so
/// memory does not grow with the objects' size.
pub struct Staged {
    dir: PathBuf,
    /// Temporary and final path of every file written so far.
    files: Vec<(PathBuf, PathBuf)>,
    /// Per namespace, in first-seen order, the file names its kustomization.yaml lists.
    namespaces: Vec<(String, Vec<String>)>,
    /// Each namespace's position in `namespaces`.
    seen: std::collections::HashMap<String, usize>,
    /// The folder made last, so each is made once.
    made: Option<PathBuf>,
}

impl Staged {
    pub fn new(dir: &Path) -> Self {
        Staged {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            namespaces: Vec::new(),
            seen: std::collections::HashMap::new(),
            made: None,
        }
    }

    /// Writes `r` under its temporary name.
    pub fn add(&mut self, r: &Rendered) -> Result<(), GenError> {
        let file = format!("{}-{}.yaml", r.kind.to_ascii_lowercase(), r.name);
        self.write(
            &Path::new(&r.namespace).join(&file),
            &format!("# Source: {}\n{}", r.source, r.text),
        )?;
        match self.seen.get(&r.namespace) {
            Some(&i) => self.namespaces[i].1.push(file),
            None => {
                self.seen.insert(r.namespace.clone(), self.namespaces.len());
                self.namespaces.push((r.namespace.clone(), vec![file]));
            }
        }
        Ok(())
    }

    fn write(&mut self, rel: &Path, text: &str) -> Result<(), GenError> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent()
            && self.made.as_deref() != Some(parent)
        {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            self.made = Some(parent.to_path_buf());
        }
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        self.files.push((tmp, path));
        Ok(())
    }

    /// Writes each namespace's kustomization.yaml, then renames every file into place; returns
    /// the final paths.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, GenError> {
        for (ns, files) in std::mem::take(&mut self.namespaces) {
            self.write(&Path::new(&ns).join("kustomization.yaml"), &kustomization(&files))?;
        }
        let files = std::mem::take(&mut self.files);
        let mut written = Vec::with_capacity(files.len());
        for (i, (tmp, path)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, path) {
                // Too late to undo the renames before it; at least leave no temporary files.
                for (tmp, _) in &files[i..] {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(io(path)(e));
            }
            written.push(path.clone());
        }
        Ok(written)
    }
}

impl Drop for Staged {
    /// Not committed (an error on the way): the temporary files go.
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenError {
    let path = path.display().to_string();
    move |source| GenError::Io { path, source }
}

fn kustomization(files: &[String]) -> String {
    let mut k = String::from(
        "# Written by meshscrape-gen; apply with: kubectl apply -k .\napiVersion: \
            kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for file in files {
        k.push_str(&format!("  - {file}\n"));
    }
    k
}
