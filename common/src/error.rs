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
    /// Turns a serde-saphyr error into one in the user's words: the file, line and column, the
    /// key's full path (`container.port`), what was found there and what would be valid, never
    /// the parser's or Rust's names for types.
    pub fn from_yaml(path: PathBuf, source: &str, err: &serde_saphyr::Error) -> Self {
        let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = err.without_snippet().to_string();
        // serde-saphyr appends its own " at line X column Y"; we print the location in front.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        let found = found_at(source, line, column);
        let mut message = in_users_words(&message, found.as_deref());
        if let Some(k) = key_path(source, line).filter(|k| !message.contains(&format!("`{k}`"))) {
            message = format!("{k}: {message}");
        }
        ConfigError::Syntax { path, line, column, message }
    }
}

/// What the parser's type words mean to someone writing YAML.
const TYPE_WORDS: [(&str, &str); 16] = [
    ("i64", "a whole number"),
    ("i32", "a whole number"),
    ("u64", "a whole number of 0 or more"),
    ("u32", "a whole number of 0 or more"),
    ("u16", "a whole number of 0 or more"),
    ("u8", "a whole number of 0 or more"),
    ("integer", "a whole number"),
    ("f64", "a number"),
    ("boolean", "true or false"),
    ("bool", "true or false"),
    ("string scalar", "a single value (not a list or a mapping)"),
    ("a string", "a single value (not a list or a mapping)"),
    ("sequence start", "a list (`[a, b]` or one `- item` per line)"),
    ("a sequence", "a list (`[a, b]` or one `- item` per line)"),
    ("mapping start", "a mapping (keys under it)"),
    ("a map", "a mapping (keys under it)"),
];

/// The parser's message, said without its type names: `invalid i64` becomes "`eighty` is not a
/// whole number", `expected sequence start` "`tools` is not a list ...".
fn in_users_words(message: &str, found: Option<&str>) -> String {
    let found = match found {
        Some(f) if !f.is_empty() => format!("`{f}`"),
        _ => "the value here".to_string(),
    };
    let lower = message.to_ascii_lowercase();
    let wanted =
        |rest: &str| TYPE_WORDS.iter().find(|(word, _)| rest.contains(word)).map(|(_, said)| *said);
    if let Some(rest) = lower.strip_prefix("invalid ").filter(|r| !r.starts_with("type"))
        && let Some(said) = wanted(rest)
    {
        return format!("{found} is not {said}");
    }
    if let Some(rest) = lower.strip_prefix("expected ")
        && let Some(said) = wanted(rest)
    {
        let short = said.split(" (").next().unwrap_or(said);
        return format!("{found} is not {short}; write {said}");
    }
    // serde's "invalid type: string \"x\", expected u16" and the like.
    if let Some((_, expected)) = lower.split_once(", expected ")
        && lower.starts_with("invalid type")
        && let Some(said) = wanted(expected)
    {
        return format!("{found} is not {said}");
    }
    // Anything else keeps its words, less the generic types it may name.
    let mut out = message.to_string();
    for (from, to) in [("Option<String>", "a value"), ("Option<", ""), ("Vec<", "a list of ")] {
        out = out.replace(from, to);
    }
    out
}

/// The value written at `line`:`column` (1-based) of `source`, up to the end of its token.
fn found_at(source: &str, line: u64, column: u64) -> Option<String> {
    let text = source.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let start = usize::try_from(column).ok()?.checked_sub(1)?;
    let rest = text.get(start..)?.trim_start();
    let end = rest.find([',', '}', '#']).unwrap_or(rest.len());
    let token = rest[..end].trim().trim_matches(['"', '\'']);
    let token: String = token.chars().take(40).collect();
    (!token.is_empty()).then_some(token)
}

/// The full path of the key on `line` (1-based) of `source`, by block indentation:
/// `container.port`, `sidecar.routes[2]`. `None` when the line holds no key.
fn key_path(source: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let at = usize::try_from(line).ok()?.checked_sub(1)?;
    let key_of = |text: &str| -> Option<(usize, String)> {
        let indent = text.len() - text.trim_start().len();
        let body = text.trim_start().trim_start_matches("- ");
        let (key, _) = body.split_once(':')?;
        let key = key.trim().trim_matches(['"', '\'']);
        (!key.is_empty() && !key.contains([' ', '{', '[', '#'])).then(|| (indent, key.to_string()))
    };
    // A list item without a key of its own belongs to the key above it.
    let (mut indent, key) = match key_of(lines.get(at)?) {
        Some(k) => k,
        None => {
            let item = lines[at].len() - lines[at].trim_start().len();
            lines[..at].iter().rev().find_map(|t| {
                let this = t.len() - t.trim_start().len();
                (this < item || (this == item && !t.trim_start().starts_with('-')))
                    .then(|| key_of(t))
                    .flatten()
            })?
        }
    };
    let mut path = vec![key];
    for text in lines[..at].iter().rev() {
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        let this = text.len() - text.trim_start().len();
        if this < indent {
            if let Some((i, parent)) = key_of(text) {
                path.push(parent);
                indent = i;
            } else {
                indent = this;
            }
            if indent == 0 {
                break;
            }
        }
    }
    path.reverse();
    Some(path.join("."))
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

    fn syntax(source: &str) -> String {
        let err = serde_saphyr::from_str::<crate::proxy::ProxyFileProbe>(source).unwrap_err();
        super::ConfigError::from_yaml("f.yaml".into(), source, &err).to_string()
    }

    #[test]
    fn shape_errors_name_the_key_path_the_value_and_what_would_be_valid_in_plain_words() {
        let e = syntax("limits:\n  maxInFlight: lots\n");
        assert_eq!(e, "f.yaml:2:16: limits.maxInFlight: `lots` is not a whole number of 0 or more");
        let e = syntax("limits:\n  maxInFlight: [1]\n");
        assert!(e.starts_with("f.yaml:2:16: limits.maxInFlight: "), "{e}");
        let e = syntax("routes: /a=/b\n");
        assert!(e.contains("routes: `/a=/b` is not a list"), "{e}");
        let e = syntax("timeouts: 5\n");
        assert!(e.contains("timeouts: `5` is not a mapping"), "{e}");
        for e in [e, syntax("logFormat: [json]\n")] {
            for rust in ["i64", "u64", "Option<", "scalar", "sequence start", "mapping start"] {
                assert!(!e.contains(rust), "{rust} in {e}");
            }
        }
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
