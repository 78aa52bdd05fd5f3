//! Reading a binding's configuration, and keeping it per binding.
//!
//! Every plugin receives its configuration as JSON text converted from the
//! rule's TOML table, once per *binding* (one use of the plugin by one
//! rule), and must explain a bad configuration in words an operator can act
//! on (the message is shown by `tocsin check` and `GET /v1/rules`):
//!
//! * [`Table`]: reads a config object key by key, so every error names the
//!   key and the reason, and rejects keys nobody asked for;
//! * [`parse_duration`] / [`format_duration`]: `500ms`, `30s`, `15m`, `2h`, `1d`;
//! * [`Registry`]: the per-binding store the export macros keep;
//! * [`rfc3339`]: epoch milliseconds as UTC text, for human-facing output.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::rc::Rc;

use serde_json::{Map, Value};

/// What an invalid duration error tells the operator to write instead.
const DURATION_HINT: &str = "use e.g. 500ms, 30s, 15m, 2h, 1d";

/// A plugin's configuration object, consumed key by key.
///
/// Keys are accepted in `kebab-case` (the documented form) and in
/// `snake_case` (what people type in TOML out of habit); both spellings of the
/// same key at once is an error. Each getter removes the key it reads and
/// remembers it as known, so [`Table::finish`] can reject whatever is left
/// and list what would have been accepted.
///
/// Reading by hand instead of deriving `Deserialize` is deliberate: errors
/// then always have the form `plugin: "key": reason`, and plugins do not pay
/// for serde's derive macros in compile time and component size.
#[derive(Debug)]
pub struct Table {
    plugin: &'static str,
    entries: Map<String, Value>,
    known: Vec<&'static str>,
}

impl Table {
    /// Parse the configuration text of `plugin` (used as the prefix of every
    /// error message). Empty text and `null` mean an empty table, since a
    /// binding without settings is normal.
    pub fn parse(plugin: &'static str, json: &str) -> Result<Table, String> {
        let value: Value = if json.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(json)
                .map_err(|e| format!("{plugin}: configuration is not valid JSON: {e}"))?
        };
        let object = match value {
            Value::Null => Map::new(),
            Value::Object(object) => object,
            other => {
                return Err(format!(
                    "{plugin}: configuration must be a table, got {}",
                    describe(&other)
                ))
            }
        };
        let mut entries = Map::new();
        for (key, value) in object {
            let normal = key.replace('_', "-");
            if entries.contains_key(&normal) {
                return Err(format!(
                    "{plugin}: \"{normal}\" is given twice (as \"{normal}\" and \"{}\")",
                    normal.replace('-', "_")
                ));
            }
            entries.insert(normal, value);
        }
        Ok(Table {
            plugin,
            entries,
            known: Vec::new(),
        })
    }

    /// The plugin name this table reports errors under.
    pub fn plugin(&self) -> &'static str {
        self.plugin
    }

    /// An error about `key`, in the common `plugin: "key": reason` form.
    /// Plugins use it for their own checks (ranges, cross-key rules).
    pub fn error(&self, key: &str, why: impl Display) -> String {
        format!("{}: \"{}\": {}", self.plugin, key, why)
    }

    /// Remove `key` (JSON `null` counts as absent) and mark it as known.
    pub fn take(&mut self, key: &'static str) -> Option<Value> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.entries.remove(key).filter(|v| !v.is_null())
    }

    /// A non-negative integer.
    pub fn u64(&mut self, key: &'static str) -> Result<Option<u64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.error(
                    key,
                    format!("expected a non-negative integer, got {}", describe(&v)),
                )
            }),
        }
    }

    /// `true` or `false`.
    pub fn bool(&mut self, key: &'static str) -> Result<Option<bool>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => {
                Err(self.error(key, format!("expected true or false, got {}", describe(&v))))
            }
        }
    }

    /// A string.
    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.error(key, format!("expected a string, got {}", describe(&v)))),
        }
    }

    /// A list of strings. A single string is accepted as a one-item list,
    /// because `to = "ops@example.com"` is what people write for one item.
    pub fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s])),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        other => {
                            return Err(self.error(
                                key,
                                format!(
                                    "item {} must be a string, got {}",
                                    i + 1,
                                    describe(&other)
                                ),
                            ))
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.error(
                key,
                format!("expected a list of strings, got {}", describe(&v)),
            )),
        }
    }

    /// A string that, when given, is not blank.
    pub fn non_empty_string(&mut self, key: &'static str) -> Result<Option<String>, String> {
        match self.string(key)? {
            Some(s) if s.trim().is_empty() => Err(self.error(key, "must not be empty")),
            other => Ok(other),
        }
    }

    /// A required, non-empty string. `example` completes the error message
    /// ("required (e.g. ...)") so the operator sees what to write.
    pub fn required_string(&mut self, key: &'static str, example: &str) -> Result<String, String> {
        self.non_empty_string(key)?
            .ok_or_else(|| self.error(key, format!("required (e.g. {example})")))
    }

    /// One of `choices` (e.g. a format name), or `None` when absent.
    pub fn choice(
        &mut self,
        key: &'static str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, String> {
        let Some(value) = self.string(key)? else {
            return Ok(None);
        };
        match choices.iter().find(|c| **c == value) {
            Some(choice) => Ok(Some(*choice)),
            None => {
                let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
                let last = quoted.len().saturating_sub(1);
                let listed = match quoted.split_at(last) {
                    ([], [only]) => only.clone(),
                    (init, [last]) => format!("{} or {last}", init.join(", ")),
                    _ => String::new(),
                };
                Err(self.error(key, format!("unknown {key} \"{value}\" (use {listed})")))
            }
        }
    }

    /// An absolute `http://` or `https://` URL with a host, and without
    /// whitespace. The host's own check (`grants.http`) comes later; this
    /// one catches typos when the rule is loaded.
    pub fn url(&mut self, key: &'static str) -> Result<Option<String>, String> {
        let Some(url) = self.string(key)? else {
            return Ok(None);
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                self.error(
                    key,
                    format!("\"{url}\" must start with http:// or https://"),
                )
            })?;
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            return Err(self.error(key, format!("\"{url}\" has no host")));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.error(key, format!("\"{url}\" contains whitespace")));
        }
        Ok(Some(url))
    }

    /// A required URL (see [`Table::url`]); `example` completes the error.
    pub fn required_url(&mut self, key: &'static str, example: &str) -> Result<String, String> {
        self.url(key)?
            .ok_or_else(|| self.error(key, format!("required (e.g. \"{example}\")")))
    }

    /// A table of string values (e.g. HTTP headers), in key order.
    pub fn string_map(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Vec<(String, String)>>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Object(map)) => {
                let mut out = Vec::with_capacity(map.len());
                for (k, v) in map {
                    match v {
                        Value::String(s) => out.push((k, s)),
                        other => {
                            return Err(self.error(
                                key,
                                format!(
                                    "value of \"{k}\" must be a string, got {}",
                                    describe(&other)
                                ),
                            ))
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.error(
                key,
                format!("expected a table of strings, got {}", describe(&v)),
            )),
        }
    }

    /// A duration in milliseconds: text such as `500ms`, `30s`, `15m`, `2h`,
    /// `1d`, or an integer number of milliseconds.
    pub fn duration_ms(&mut self, key: &'static str) -> Result<Option<u64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => parse_duration(&s).map(Some).map_err(|e| self.error(key, e)),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                self.error(
                    key,
                    format!("invalid duration {n} (milliseconds must be a non-negative integer; or {DURATION_HINT})"),
                )
            }),
            Some(v) => Err(self.error(
                key,
                format!("invalid duration {} ({DURATION_HINT})", describe(&v)),
            )),
        }
    }

    /// Fail if the table holds keys no getter asked for, naming the first
    /// such key and listing the accepted ones (typos are the usual cause).
    pub fn finish(self) -> Result<(), String> {
        match self.entries.keys().next() {
            None => Ok(()),
            Some(key) if self.known.is_empty() => Err(format!(
                "{}: unknown key \"{key}\" (this plugin takes no settings)",
                self.plugin
            )),
            Some(key) => Err(format!(
                "{}: unknown key \"{key}\" (expected one of: {})",
                self.plugin,
                self.known.join(", ")
            )),
        }
    }
}

/// A short description of a JSON value for error messages: its type and,
/// for scalars, the value itself (long strings are cut).
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("the string \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("the string \"{s}\""),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a table".to_string(),
    }
}

/// Parse a duration such as `500ms`, `30s`, `15m`, `2h` or `1d` into
/// milliseconds. One number and one unit: compound forms (`1h30m`) are
/// rejected rather than guessed at; write `90m`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid duration \"{text}\" ({DURATION_HINT})");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let factor: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("duration \"{text}\" is too large"))
}

/// Render milliseconds in the largest unit that divides them exactly
/// (`900000` → `15m`), the inverse of [`parse_duration`], for alert texts.
pub fn format_duration(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    if ms != 0 {
        for (factor, unit) in UNITS {
            if ms.is_multiple_of(factor) {
                return format!("{}{unit}", ms / factor);
            }
        }
    }
    format!("{ms}ms")
}

/// Format epoch milliseconds as RFC 3339 UTC, e.g. `2024-05-01T12:34:56.789Z`.
///
/// Done by hand (days-to-civil conversion) so plugins need no date crate.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Configurations by binding id.
///
/// The host configures each binding before using it and reconfigures it on a
/// rule change; a failed `configure` must leave the previous configuration
/// serving, so only successful ones are stored. Plugins keep one registry in
/// a `thread_local!` (a component instance is single-threaded). Entries are
/// `Rc` so a call can hold its configuration while it calls the host.
///
/// This is only a cache of what the host sent: after a trap the host makes a
/// fresh instance and configures it again.
pub struct Registry<C> {
    plugin: &'static str,
    configs: RefCell<BTreeMap<String, Rc<C>>>,
}

impl<C> Registry<C> {
    /// An empty registry; `plugin` prefixes the "not configured" error.
    pub const fn new(plugin: &'static str) -> Self {
        Registry {
            plugin,
            configs: RefCell::new(BTreeMap::new()),
        }
    }

    /// Store (or replace) the configuration of `binding`.
    pub fn insert(&self, binding: &str, config: C) {
        self.configs
            .borrow_mut()
            .insert(binding.to_string(), Rc::new(config));
    }

    /// The configuration of `binding`, or the error to return from a call
    /// for a binding the host never configured (a host bug, or a fresh
    /// instance the host forgot to configure).
    pub fn get(&self, binding: &str) -> Result<Rc<C>, String> {
        self.configs
            .borrow()
            .get(binding)
            .cloned()
            .ok_or_else(|| format!("{}: binding {binding} not configured", self.plugin))
    }
}

/// Parses `json` as plugin `name`'s configuration with `configure`, then
/// refuses the keys it did not read: what every export macro's `configure`
/// does.
pub fn read<T>(
    name: &'static str,
    json: &str,
    configure: impl FnOnce(&mut Table) -> Result<T, String>,
) -> Result<T, String> {
    let mut table = Table::parse(name, json)?;
    let value = configure(&mut table)?;
    table.finish()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("15m"), Ok(900_000));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration(" 15 m "), Ok(900_000));
        assert!(parse_duration("15x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("1h30m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(format_duration(900_000), "15m");
        assert_eq!(format_duration(90_000), "90s");
        assert_eq!(format_duration(1_500), "1500ms");
        assert_eq!(format_duration(0), "0ms");
    }

    #[test]
    fn table_errors_name_the_key() {
        let mut t = Table::parse("threshold", r#"{"window":"15x"}"#).unwrap();
        assert_eq!(
            t.duration_ms("window").unwrap_err(),
            r#"threshold: "window": invalid duration "15x" (use e.g. 500ms, 30s, 15m, 2h, 1d)"#
        );
        let mut t = Table::parse("x", r#"{"max_len":3,"oops":1}"#).unwrap();
        assert_eq!(t.u64("max-len"), Ok(Some(3)));
        assert_eq!(
            t.finish().unwrap_err(),
            r#"x: unknown key "oops" (expected one of: max-len)"#
        );
        assert!(Table::parse("x", r#"{"a-b":1,"a_b":2}"#).is_err());
        assert!(Table::parse("x", "[1]").is_err());
        assert!(Table::parse("x", "").unwrap().finish().is_ok());
    }

    #[test]
    fn choices_list_the_accepted_values() {
        let mut t = Table::parse("x", r#"{"f":"z","g":"b","one":"q"}"#).unwrap();
        assert_eq!(
            t.choice("f", &["a", "b", "c"]).unwrap_err(),
            r#"x: "f": unknown f "z" (use "a", "b" or "c")"#
        );
        assert_eq!(
            t.choice("one", &["a"]).unwrap_err(),
            r#"x: "one": unknown one "q" (use "a")"#
        );
        assert_eq!(t.choice("g", &["a", "b"]), Ok(Some("b")));
        assert_eq!(t.choice("h", &["a"]), Ok(None));
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
