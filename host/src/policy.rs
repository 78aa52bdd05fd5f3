//! Policy files: the files of the rules directory that hold no rule but
//! what applies across rules — `[[inhibit]]` tables ([`crate::inhibit`])
//! and `[[time-intervals.NAME]]` tables ([`crate::interval`]). Told from
//! rules by their content, so ops name them as they like
//! (`rules/policy.toml`, `rules/maintenance.toml`), and hot-reloaded with
//! the rules ([`crate::catalog`]).

use crate::inhibit::InhibitRule;
use crate::interval::Intervals;

/// The top-level keys of a policy file.
const KEYS: [&str; 2] = ["inhibit", "time-intervals"];

/// What one policy file says.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub inhibit: Vec<InhibitRule>,
    pub intervals: Intervals,
}

/// Whether the TOML `text` is a policy file (its top level names one of
/// [`KEYS`]) rather than a rule. A file that is not TOML at all is left
/// to the rule loader, which reports where it breaks.
pub fn is_policy_file(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| KEYS.iter().any(|k| t.contains_key(*k)))
}

/// The policy of `text`, from file `file`; the error says what is wrong
/// and where.
pub fn parse(text: &str, file: &str) -> Result<Policy, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut policy = Policy::default();
    for (key, value) in table {
        match key.as_str() {
            "inhibit" => policy.inhibit = crate::inhibit::parse(value, file)?,
            "time-intervals" => policy.intervals = crate::interval::parse(value)?,
            other => {
                return Err(format!(
                "`{other}`: a policy file holds only {KEYS:?} (a rule goes in a file of its own)"
            ))
            }
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn told_from_rules_and_strict() {
        let both = "[[inhibit]]\nsource = ['a=1']\ntarget = ['b=2']\n[[time-intervals.night]]\ntimes = [\"00:00-06:00\"]\n";
        assert!(is_policy_file(both));
        let p = parse(both, "p.toml").expect("valid");
        assert_eq!((p.inhibit.len(), p.intervals.len()), (1, 1));
        assert!(!is_policy_file("[aggregate]\nplugin = \"threshold\"\n"));
        let e = parse(
            "[[inhibit]]\nsource = ['a=1']\ntarget = ['b=2']\n[aggregate]\n",
            "p",
        )
        .unwrap_err();
        assert!(e.contains("aggregate"), "{e}");
    }
}
