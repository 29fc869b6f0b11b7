//! Errors that tell a user which file, field and line is wrong, and what would be valid.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A command-line flag, e.g. `--listen`.
    Flag(&'static str),
    /// A YAML file, at a 1-based line and column.
    File { path: PathBuf, line: u64, column: u64 },
    /// A key the YAML file leaves out, so its default (or a value derived from another key) applies.
    Unset { path: PathBuf },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the default"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::File { path, line, column } => write!(f, "{}:{line}:{column}", path.display()),
            Origin::Unset { path } => write!(f, "{} (key not set, default used)", path.display()),
        }
    }
}

impl Origin {
    /// A position in `path`; `Unset` when serde-saphyr has no location (a value meshscrape filled
    /// in rather than read), so the message still names the file; the default with no file.
    pub fn at(path: Option<&Path>, loc: &Location) -> Origin {
        match path {
            Some(p) if *loc != Location::UNKNOWN => {
                Origin::File { path: p.to_path_buf(), line: loc.line(), column: loc.column() }
            }
            Some(p) => Origin::Unset { path: p.to_path_buf() },
            None => Origin::Default,
        }
    }
}

/// A value and where it came from, before validation.
pub(crate) struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// Collects problems so that a whole file's mistakes are reported at once.
#[derive(Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, origin: Origin, field: &str, message: String) {
        self.0.push(Problem { origin, field: field.to_string(), message });
    }

    /// Runs `f` on the value; records a problem where it came from on failure.
    pub(crate) fn check<T, U>(
        &mut self,
        field: &str,
        v: Sourced<T>,
        f: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<U> {
        match f(v.value) {
            Ok(u) => Some(u),
            Err(message) => {
                self.push(v.origin, field, message);
                None
            }
        }
    }
}

/// One invalid value: where it came from, which field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// The field's path in the YAML file, e.g. `routes[2]` or `timeouts.upstream`.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.field, printable(&self.message))
    }
}

/// Values quoted in messages longer than this many characters are shortened.
const QUOTED_MAX: usize = 80;

/// A message as one readable line: control characters (a newline inside a quoted YAML value)
/// are escaped, and a value quoted in backticks longer than `QUOTED_MAX` characters is cut,
/// saying how long it was, so one bad value cannot bury the rest of the report. Also used by
/// meshscrape-verify for what it reads from manifests and scrape bodies.
pub fn printable(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    // A value holding a backtick itself upsets which parts are quoted; then nothing is cut, so
    // the part that says what would be valid is never mistaken for a value.
    let balanced = message.matches('`').count().is_multiple_of(2);
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let quoted = balanced && i % 2 == 1;
        let count = part.chars().count();
        let keep = if quoted && count > QUOTED_MAX { QUOTED_MAX / 2 } else { count };
        for c in part.chars().take(keep) {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        if keep < count {
            out.push_str(&format!("… ({count} characters)"));
        }
    }
    out
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not YAML of the expected shape (syntax, unknown field, wrong type).
    #[error("{}:{line}:{column}: {}", path.display(), printable(message))]
    Syntax { path: PathBuf, line: u64, column: u64, message: String },
    /// The file parsed, but one or more values are invalid; every one is listed.
    #[error("{}", render(problems))]
    Invalid { problems: Vec<Problem> },
}

fn render(problems: &[Problem]) -> String {
    let mut out = format!("{} invalid configuration value(s):", problems.len());
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

impl ConfigError {
    /// Turns a serde-saphyr error into one that names the file, the line and, where the parser
    /// does not, the key on that line of `source`.
    pub fn from_yaml(path: PathBuf, source: &str, err: &serde_saphyr::Error) -> Self {
        let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = err.without_snippet().to_string();
        // serde-saphyr appends its own " at line X column Y"; we print the location in front.
        let mut message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        // Type errors ("invalid i64") do not say which key; the line does.
        let key = usize::try_from(line)
            .ok()
            .and_then(|l| source.lines().nth(l.checked_sub(1)?))
            .and_then(|text| text.split_once(':'))
            .map(|(k, _)| k.trim().trim_start_matches("- ").trim_matches(['"', '\'']))
            .filter(|k| !k.is_empty() && !k.contains(' ') && !message.contains(&format!("`{k}`")));
        if let Some(k) = key {
            message = format!("{k}: {message}");
        }
        ConfigError::Syntax { path, line, column, message }
    }
}

/// An error followed by its causes, outermost first.
pub fn sources<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// An error and its causes on one line, `outer: cause: root`, for logs and one-line reasons.
/// A cause that the error before it already ends with (kube's and hyper-util's repeat their
/// source in their own message) is said once.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in sources(err).map(|e| e.to_string()) {
        if !parts.last().is_some_and(|prev| prev.ends_with(&part)) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn printable_escapes_control_characters_and_cuts_long_quoted_values() {
        assert_eq!(super::printable("`a\nb` is not a label"), "`a\\nb` is not a label");
        let long = format!("`{}` is not a label; use at most 63", "x".repeat(5000));
        assert_eq!(
            super::printable(&long),
            format!("`{}… (5000 characters)` is not a label; use at most 63", "x".repeat(40))
        );
        let plain = "routes[0]: `/m=/m` is a duplicate";
        assert_eq!(super::printable(plain), plain);
        // A backtick inside the value: the advice after it is kept whole.
        let odd =
            format!("`a`b` is not a label: {}", "use at most 63 lowercase letters ".repeat(4));
        assert_eq!(super::printable(&odd), odd);
    }

    #[test]
    fn chain_says_each_cause_once() {
        let root = E("connection refused", None);
        let inner = E("client error (Connect)", Some(Box::new(root)));
        let outer = E("ServiceError: client error (Connect)", Some(Box::new(inner)));
        assert_eq!(
            super::chain(&outer),
            "ServiceError: client error (Connect): connection refused"
        );
        assert_eq!(super::chain(&E("a", Some(Box::new(E("b", None))))), "a: b");
    }
}
