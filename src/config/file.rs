//! Reading a YAML file into a generic tree, and walking that tree while
//! collecting every problem with its key path.
//!
//! We deliberately do not deserialize straight into `#[serde(deny_unknown_fields)]`
//! structs: serde stops at the first error, and an operator fixing a config
//! deserves the whole list at once (`check-config` prints ALL problems).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

/// No duration in the config may exceed this (larger values would only
/// overflow cookie ages and millisecond arithmetic).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// One problem in one file: printed as `FILE: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// All problems found in a config and the files it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Collects problems for one file.
#[derive(Debug)]
pub struct Collector {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl Collector {
    pub fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            problems: Vec::new(),
        }
    }

    pub fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Reads a config file's text; an unreadable file is a problem of its own.
pub fn read_text(path: &Path) -> Result<String, Problems> {
    std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_path_buf(),
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })
}

/// Parses YAML text and builds a value from the tree, collecting every
/// problem of both steps. `${NAME}` in strings is replaced by the
/// environment variable NAME (a missing variable is a problem).
pub fn parse_with<T>(
    text: &str,
    path: &Path,
    build: impl FnOnce(Value, &mut Collector) -> Option<T>,
) -> Result<T, Problems> {
    let mut c = Collector::new(path);
    let built = parse_yaml(text, &mut c).and_then(|tree| build(tree, &mut c));
    match built {
        Some(v) if c.problems.is_empty() => Ok(v),
        _ => Err(Problems(c.problems)),
    }
}

pub fn parse_yaml(text: &str, c: &mut Collector) -> Option<Value> {
    if text.trim().is_empty() {
        c.err("", "the file is empty");
        return None;
    }
    match serde_saphyr::from_str::<Value>(text) {
        Ok(mut v) => {
            substitute_env(&mut v, "", c);
            Some(v)
        }
        Err(e) => {
            c.err("", yaml_error_message(&e.to_string()));
            None
        }
    }
}

/// The parser's error as one line a user can act on: its first line (line,
/// column and what is wrong), without the source excerpt that follows and
/// without advice meant for programmers using the parser.
fn yaml_error_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw);
    let first = first.split("  -->").next().unwrap_or(first).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if let Some((at, key)) = first.split_once(": duplicate mapping key: ") {
        let key = key.split(',').next().unwrap_or(key).trim();
        return format!(
            "{at}: `{key}` appears twice in the same section; keep one (YAML would silently use the last)"
        );
    }
    format!("not valid YAML: {first}")
}

fn substitute_env(v: &mut Value, path: &str, c: &mut Collector) {
    match v {
        Value::String(s) if s.contains("${") => match expand_env(s) {
            Ok(expanded) => *s = expanded,
            Err(msg) => c.err(path, msg),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_env(item, &format!("{path}[{i}]"), c);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                substitute_env(item, &join(path, k), c);
            }
        }
        _ => {}
    }
}

fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` (write `${NAME}`)".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{name}}}` is not a valid environment variable reference"
            ));
        }
        let value = std::env::var(name).map_err(|_| {
            format!("environment variable {name} is not set (referenced as `${{{name}}}`)")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A mapping being read. Keys are taken out as they are read; whatever is
/// left at [`Section::finish`] is reported as unknown.
pub struct Section {
    pub path: String,
    map: Map<String, Value>,
    known: &'static [&'static str],
}

impl Section {
    /// `value` None (key absent) or null gives an empty section (all defaults).
    pub fn new(
        c: &mut Collector,
        path: &str,
        value: Option<Value>,
        known: &'static [&'static str],
    ) -> Self {
        let map = match value {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                c.err(path, format!("expected a mapping, found {}", kind(&other)));
                Map::new()
            }
        };
        Self {
            path: path.to_string(),
            map,
            known,
        }
    }

    pub fn key(&self, k: &str) -> String {
        join(&self.path, k)
    }

    pub fn take(&mut self, k: &str) -> Option<Value> {
        match self.map.remove(k) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn finish(self, c: &mut Collector) {
        for k in self.map.keys() {
            c.err(
                join(&self.path, k),
                format!("unknown key (known keys here: {})", self.known.join(", ")),
            );
        }
    }

    pub fn string(&mut self, c: &mut Collector, k: &str, default: &str) -> String {
        self.opt_string(c, k).unwrap_or_else(|| default.to_string())
    }

    pub fn opt_string(&mut self, c: &mut Collector, k: &str) -> Option<String> {
        match self.take(k)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => {
                c.err(
                    self.key(k),
                    format!("expected a string, found the boolean {b} (YAML reads yes/no/on/off/true/false as booleans: quote the value)"),
                );
                None
            }
            other => {
                c.err(
                    self.key(k),
                    format!("expected a string, found {}", kind(&other)),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, c: &mut Collector, k: &str, default: bool) -> bool {
        match self.take(k) {
            None => default,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                c.err(
                    self.key(k),
                    format!("expected true or false, found {}", kind(&other)),
                );
                default
            }
        }
    }

    pub fn u64(&mut self, c: &mut Collector, k: &str, default: u64, min: u64, max: u64) -> u64 {
        match self.take(k) {
            None => default,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => v,
                _ => {
                    c.err(
                        self.key(k),
                        format!("expected a whole number from {min} to {max}, found {n}"),
                    );
                    default
                }
            },
            Some(other) => {
                c.err(
                    self.key(k),
                    format!("expected a whole number, found {}", kind(&other)),
                );
                default
            }
        }
    }

    /// A humantime duration such as `30s`, `15m`, `8h`.
    pub fn duration(&mut self, c: &mut Collector, k: &str, default: Duration) -> Duration {
        let key = self.key(k);
        match self.take(k) {
            None => default,
            Some(Value::String(s)) => match humantime::parse_duration(s.trim()) {
                Ok(d) if d > MAX_DURATION => {
                    c.err(
                        key,
                        format!(
                            "`{s}` is longer than any sensible setting (at most {})",
                            humantime::format_duration(MAX_DURATION)
                        ),
                    );
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    c.err(
                        key,
                        format!("`{s}` is not a duration ({e}); write e.g. `30s`, `15m` or `8h`"),
                    );
                    default
                }
            },
            Some(other) => {
                c.err(
                    key,
                    format!(
                        "expected a duration such as `30s` or `15m`, found {}",
                        kind(&other)
                    ),
                );
                default
            }
        }
    }

    pub fn string_list(&mut self, c: &mut Collector, k: &str) -> Vec<String> {
        let key = self.key(k);
        match self.take(k) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::String(s) => Some(s),
                    other => {
                        c.err(
                            format!("{key}[{i}]"),
                            format!("expected a string, found {}", kind(&other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                c.err(key, format!("expected a list, found {}", kind(&other)));
                Vec::new()
            }
        }
    }

    pub fn list(&mut self, c: &mut Collector, k: &str) -> Vec<Value> {
        match self.take(k) {
            None => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                c.err(
                    self.key(k),
                    format!("expected a list, found {}", kind(&other)),
                );
                Vec::new()
            }
        }
    }

    pub fn path(&mut self, c: &mut Collector, k: &str, default: &str) -> PathBuf {
        PathBuf::from(self.string(c, k, default))
    }

    pub fn opt_path(&mut self, c: &mut Collector, k: &str) -> Option<PathBuf> {
        self.opt_string(c, k).map(PathBuf::from)
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_substitution_replaces_and_reports_missing() {
        std::env::set_var("AUTHGATE_TEST_SUBST", "s3cret");
        assert_eq!(
            expand_env("a-${AUTHGATE_TEST_SUBST}-b").unwrap(),
            "a-s3cret-b"
        );
        assert!(expand_env("${AUTHGATE_SURELY_NOT_SET_42}")
            .unwrap_err()
            .contains("AUTHGATE_SURELY_NOT_SET_42"));
        assert!(expand_env("${oops").is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut c = Collector::new(Path::new("x.yaml"));
        assert!(parse_yaml("auth:\n  idle: 1m\n  idle: 5m\n", &mut c).is_none());
        assert_eq!(c.problems.len(), 1);
        let text = c.problems[0].to_string();
        assert!(
            text.contains("line 3 column 3: `idle` appears twice"),
            "{text}"
        );
        assert!(
            !text.contains("DuplicateKeyPolicy") && !text.contains("-->"),
            "{text}"
        );
        let mut c = Collector::new(Path::new("x.yaml"));
        assert!(parse_yaml("a: [1\n", &mut c).is_none());
        let text = c.problems[0].to_string();
        assert!(
            text.contains("not valid YAML: line 1") && !text.contains('|'),
            "{text}"
        );
    }
}
