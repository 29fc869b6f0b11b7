//! Checks and how they are shown: a checklist for people, JSON for tools, JUnit for CI.

use std::fmt::Write as _;

use meshscrape_common::error::printable;
use serde::Serialize;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Not fatal, but worth a look (e.g. something could not be evaluated offline).
    Warn,
    Fail,
    /// Said for context, not judged: e.g. a second Prometheus that does not select the monitor
    /// while another one does.
    Info,
}

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub status: Status,
    /// What was checked, e.g. "Service port".
    pub name: String,
    /// The object, as kind/namespace/name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The field, e.g. spec.endpoints[0].port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// What to change, for failures and warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    // Everything a check says may quote what it read (a name from a manifest, a line of a scrape
    // body), so each text goes through `printable`: one line per check, whatever the input held.
    pub fn pass(name: &str, message: impl Into<String>) -> Self {
        Check {
            status: Status::Pass,
            name: name.into(),
            object: None,
            field: None,
            message: printable(&message.into()),
            fix: None,
        }
    }

    pub fn fail(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Fail,
            fix: Some(printable(&fix.into())),
            ..Check::pass(name, message)
        }
    }

    pub fn warn(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Warn,
            fix: Some(printable(&fix.into())),
            ..Check::pass(name, message)
        }
    }

    pub fn info(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Info,
            fix: Some(printable(&fix.into())),
            ..Check::pass(name, message)
        }
    }

    pub fn on(mut self, object: impl Into<String>) -> Self {
        self.object = Some(printable(&object.into()));
        self
    }

    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(printable(&field.into()));
        self
    }
}

/// A subcommand's result.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Junit,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// 0 when every check passed (warnings allowed), 1 when one failed.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failed())
    }

    pub fn render(&self, format: Format, colour: bool) -> String {
        match format {
            Format::Human => self.human(colour),
            Format::Json => serde_json::to_string_pretty(&self.json()).unwrap_or_default() + "\n",
            Format::Junit => self.junit(),
        }
    }

    /// The JSON report: `{"schema": "meshscrape-verify/report/v1", "summary": {...}, "checks":
    /// [...]}`, documented in docs/verify.md. Fields are only ever added.
    fn json(&self) -> serde_json::Value {
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        serde_json::json!({
            "schema": "meshscrape-verify/report/v1",
            "summary": {
                "passed": count(Status::Pass),
                "failed": count(Status::Fail),
                "warnings": count(Status::Warn),
                "notes": count(Status::Info),
                "exit_code": self.exit_code(),
            },
            "checks": self.checks,
        })
    }

    fn human(&self, colour: bool) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let (mark, code) = match c.status {
                Status::Pass => ("ok  ", "32"),
                Status::Warn => ("warn", "33"),
                Status::Fail => ("FAIL", "31"),
                Status::Info => ("info", "36"),
            };
            if colour {
                let _ = write!(out, "\x1b[{code}m{mark}\x1b[0m ");
            } else {
                let _ = write!(out, "{mark} ");
            }
            let _ = write!(out, "{}", c.name);
            if let Some(o) = &c.object {
                let _ = write!(out, " [{o}");
                if let Some(f) = &c.field {
                    let _ = write!(out, " {f}");
                }
                out.push(']');
            }
            let _ = write!(out, ": {}", c.message);
            if let Some(fix) = &c.fix {
                let _ = write!(out, " — fix: {fix}");
            }
            out.push('\n');
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        let _ = write!(
            out,
            "{} passed, {} failed, {} warnings",
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Warn)
        );
        match count(Status::Info) {
            0 => out.push('\n'),
            n => {
                let _ = writeln!(out, ", {n} notes");
            }
        }
        out
    }

    fn junit(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
        };
        let failures = self.checks.iter().filter(|c| c.status == Status::Fail).count();
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"meshscrape-verify\" \
                tests=\"{}\" failures=\"{failures}\">\n",
            self.checks.len()
        );
        for c in &self.checks {
            let name = match &c.object {
                Some(o) => format!("{} [{o}]", c.name),
                None => c.name.clone(),
            };
            let _ =
                write!(out, "  <testcase classname=\"meshscrape-verify\" name=\"{}\"", esc(&name));
            match c.status {
                Status::Fail => {
                    let detail = format!(
                        "{}{}",
                        c.message,
                        c.fix.as_ref().map(|f| format!(" — fix: {f}")).unwrap_or_default()
                    );
                    let _ = writeln!(
                        out,
                        ">\n    <failure message=\"{}\"/>\n  </testcase>",
                        esc(&detail)
                    );
                }
                Status::Warn | Status::Info => {
                    let _ = writeln!(
                        out,
                        ">\n    <system-out>{}</system-out>\n  </testcase>",
                        esc(&c.message)
                    );
                }
                Status::Pass => out.push_str("/>\n"),
            }
        }
        out.push_str("</testsuite>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_report_carries_its_schema_and_a_summary() {
        let mut r = Report::default();
        r.push(Check::pass("a", "fine"));
        r.push(Check::fail("b", "broken", "mend it"));
        r.push(Check::warn("c", "odd", "look"));
        r.push(Check::info("d", "fyi", "nothing"));
        let v: serde_json::Value = serde_json::from_str(&r.render(Format::Json, false)).unwrap();
        assert_eq!(v["schema"], "meshscrape-verify/report/v1");
        assert_eq!(
            v["summary"],
            serde_json::json!({"passed": 1, "failed": 1, "warnings": 1, "notes": 1, "exit_code": 1})
        );
        assert_eq!(v["checks"][1]["status"], "fail");
        assert_eq!(v["checks"][3]["status"], "info");
    }

    fn sample() -> Report {
        Report {
            checks: vec![
                Check::pass("Service selection", "selects Service tools/a")
                    .on("ServiceMonitor/monitoring/m"),
                Check::fail(
                    "Service port",
                    "no port named prometheus",
                    "add a port named prometheus",
                )
                .on("Service/tools/a")
                .at("spec.ports"),
            ],
        }
    }

    #[test]
    fn a_newline_read_from_the_input_stays_inside_its_checks_line() {
        let mut report = Report::default();
        report.push(
            Check::fail("ConfigMap", "ConfigMap tools/a\nb is not in the input", "add a\nb")
                .on("Deployment/tools/a\nb")
                .at("x\ny"),
        );
        let text = report.render(Format::Human, false);
        assert_eq!(
            text.lines().next(),
            Some(
                "FAIL ConfigMap [Deployment/tools/a\\nb x\\ny]: ConfigMap tools/a\\nb is not in \
                    the input — fix: add a\\nb"
            )
        );
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn human_is_one_line_per_check_naming_object_field_and_fix() {
        let text = sample().render(Format::Human, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "FAIL Service port [Service/tools/a spec.ports]: no port named prometheus — fix: add \
                a port named prometheus"
        );
        assert_eq!(lines[2], "1 passed, 1 failed, 0 warnings");
        assert_eq!(sample().exit_code(), 1);
    }

    #[test]
    fn json_and_junit_carry_the_same_checks() {
        let json: serde_json::Value =
            serde_json::from_str(&sample().render(Format::Json, false)).unwrap();
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["field"], "spec.ports");
        let junit = sample().render(Format::Junit, false);
        assert!(junit.contains("tests=\"2\" failures=\"1\""));
        assert!(junit.contains(
            "<failure message=\"no port named prometheus — fix: add a port named prometheus\"/>"
        ));
    }
}
