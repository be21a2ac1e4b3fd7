//! The shape every check report shares (`verdicts doctor`, `verdicts issue check`): one line or
//! JSON object `{"check", "status": "ok|warn|fail", "detail", "fix"}` per check.

use std::fmt;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check: its name, outcome, what was found and, unless it is ok, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    /// The concrete fix (the record to publish, the key to set); `None` when ok.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(check: &'static str, detail: impl Into<String>) -> Check {
        Check {
            check,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The checks that failed, by name (each once, in report order).
pub fn failed(checks: &[Check]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for c in checks.iter().filter(|c| c.status == Status::Fail) {
        if !names.contains(&c.check) {
            names.push(c.check);
        }
    }
    names
}

/// The human report: `STATUS  CHECK  detail` and, below a problem, `      fix: …`.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{:<4}  {:<11} {}\n",
            c.status.as_str(),
            c.check,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<11} fix: {fix}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_names_each_check_once() {
        let checks = [
            Check::fail("dkim", "a", "x"),
            Check::ok("spf", "b"),
            Check::fail("dkim", "c", "y"),
            Check::warn("site", "d", "z"),
        ];
        assert_eq!(failed(&checks), ["dkim"]);
        let text = render_text(&checks);
        assert!(text.starts_with("fail  dkim        a\n"), "{text}");
        assert!(text.contains("fix: x"));
    }
}
