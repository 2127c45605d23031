//! The check report: every problem found in a configuration, with file, place, message and
//! hint.

use std::fmt;
use std::path::{Path, PathBuf};

/// A line and column in a YAML file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineCol {
    /// Line, from 1.
    pub line: u32,
    /// Column (in characters), from 1.
    pub column: u32,
}

impl LineCol {
    /// A position; `None` when either part is 0 (the parser's "unknown").
    pub fn new(line: u64, column: u64) -> Option<LineCol> {
        let line = u32::try_from(line).ok().filter(|l| *l > 0)?;
        let column = u32::try_from(column).ok().filter(|c| *c > 0)?;
        Some(LineCol { line, column })
    }
}

impl fmt::Display for LineCol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where in a file a problem is: a line and column, a JSON pointer, or both. Both are `None`
/// for problems about a whole file (a missing file, a wrong extension).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line and column in the YAML text.
    pub line_col: Option<LineCol>,
    /// JSON pointer (RFC 6901) into the document, e.g. `/oauth/scopes/3`.
    pub pointer: Option<String>,
}

impl Location {
    /// No particular place: the whole file.
    pub const FILE: Location = Location {
        line_col: None,
        pointer: None,
    };

    /// The line, if known.
    pub fn line(&self) -> Option<u32> {
        self.line_col.map(|p| p.line)
    }
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file, relative to the configuration directory (e.g. `partners/demo-bank.yaml`).
    pub file: PathBuf,
    /// Where in the file.
    pub location: Location,
    /// What is wrong, on one line.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl ConfigProblem {
    /// A problem about a whole file.
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            file: file.into(),
            location: Location::FILE,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a fix hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> ConfigProblem {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the location.
    pub fn at(mut self, location: Location) -> ConfigProblem {
        self.location = location;
        self
    }

    fn sort_key(&self) -> (&Path, &Location, &str) {
        (&self.file, &self.location, &self.message)
    }
}

impl fmt::Display for ConfigProblem {
    /// `file:line:col: message (hint: ...)`; without a line, `file: message`, and with only a
    /// pointer, `file: at /pointer: message`. Always one line: control characters from the
    /// files (a newline inside an id, say) are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_one_line(f, &self.file.display().to_string())?;
        match (&self.location.line_col, &self.location.pointer) {
            (Some(at), _) => write!(f, ":{at}: ")?,
            (None, Some(pointer)) => {
                f.write_str(": at ")?;
                write_one_line(f, display_pointer(pointer))?;
                f.write_str(": ")?;
            }
            (None, None) => f.write_str(": ")?,
        }
        write_one_line(f, &self.message)?;
        if let Some(hint) = &self.hint {
            f.write_str(" (hint: ")?;
            write_one_line(f, hint)?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

fn write_one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

/// Every problem found in a configuration, sorted by file, then location. Never empty when
/// returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    problems: Vec<ConfigProblem>,
}

impl Report {
    /// A report of these problems, sorted.
    pub fn new(mut problems: Vec<ConfigProblem>) -> Report {
        problems.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        problems.dedup();
        Report { problems }
    }

    /// The problems, sorted by file then location.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems of one file (relative path as in [`ConfigProblem::file`]).
    pub fn for_file<'a>(
        &'a self,
        file: impl AsRef<Path> + 'a,
    ) -> impl Iterator<Item = &'a ConfigProblem> + 'a {
        self.problems
            .iter()
            .filter(move |p| p.file == file.as_ref())
    }
}

impl fmt::Display for Report {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

impl IntoIterator for Report {
    type Item = ConfigProblem;
    type IntoIter = std::vec::IntoIter<ConfigProblem>;

    fn into_iter(self) -> Self::IntoIter {
        self.problems.into_iter()
    }
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_one_problem_per_line_sorted() {
        let report = Report::new(vec![
            ConfigProblem::file("partners/demo-bank.yaml", "unknown scope \"tags:write\"")
                .at(Location {
                    line_col: LineCol::new(12, 5),
                    pointer: Some("/oauth/scopes/3".into()),
                })
                .with_hint("allowed scopes are tags:read"),
            ConfigProblem::file("gateway.yaml", "missing"),
            ConfigProblem::file("partners/demo-bank.yaml", "first").at(Location {
                line_col: LineCol::new(2, 1),
                pointer: None,
            }),
            ConfigProblem::file("partners/demo-bank.yaml", "pointer only").at(Location {
                line_col: None,
                pointer: Some(String::new()),
            }),
        ]);
        assert_eq!(
            report.to_string(),
            "gateway.yaml: missing\n\
             partners/demo-bank.yaml: at /: pointer only\n\
             partners/demo-bank.yaml:2:1: first\n\
             partners/demo-bank.yaml:12:5: unknown scope \"tags:write\" (hint: allowed scopes are tags:read)"
        );
        assert_eq!(report.for_file("partners/demo-bank.yaml").count(), 3);
    }

    #[test]
    fn display_escapes_control_characters() {
        let problem = ConfigProblem::file("partners/a\nb.yaml", "id \"x\ny\" is bad")
            .with_hint("rename x\ny");
        assert_eq!(
            problem.to_string(),
            "partners/a\\nb.yaml: id \"x\\ny\" is bad (hint: rename x\\ny)"
        );
    }
}
