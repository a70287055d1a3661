//! What can be wrong with a configuration file, and where.
//!
//! Every problem names the file and, where it can, the line and column of
//! the offending key or value, like a compiler: editors and operators jump
//! straight to it. Messages never repeat a secret value.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A line and column (both counted from 1; columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// The location where `span` starts.
    pub fn of_span(text: &str, span: &Range<usize>) -> Location {
        Location::of_offset(text, span.start)
    }
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The configuration file.
    pub file: PathBuf,
    /// Where in it, when known.
    #[serde(flatten)]
    pub location: Option<Location>,
    /// What is wrong (never contains a secret value).
    pub message: String,
    /// What to write instead, when that can be said.
    pub help: Option<String>,
}

impl Problem {
    /// A problem at `location` in `file`.
    pub fn new(file: &Path, location: Option<Location>, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_owned(),
            location,
            message: message.into(),
            help: None,
        }
    }

    /// Adds a `help:` line.
    pub fn with_help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }
}

/// `FILE:LINE:COLUMN: message`, then `  help: …` on its own line.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.location {
            write!(f, ":{}:{}", l.line, l.column)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file was read but is not a valid configuration (one or more problems).
    #[error("{}", join(.0))]
    Invalid(Vec<Problem>),

    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read the configuration file: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },

    /// No file was named and none exists at the default place.
    #[error(
        "no configuration file: pass --config FILE, set VAULT_CONFIG, or create {}",
        super::SYSTEM_PATH
    )]
    NotFound,
}

impl SettingsError {
    /// The problems of an invalid file (empty for the other variants).
    pub fn problems(&self) -> &[Problem] {
        match self {
            SettingsError::Invalid(p) => p,
            _ => &[],
        }
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(
            Location::of_offset(text, 0),
            Location { line: 1, column: 1 }
        );
        let at = text.find('=').unwrap();
        assert_eq!(
            Location::of_offset(text, at),
            Location { line: 1, column: 3 }
        );
        let at = text.rfind('"').unwrap();
        assert_eq!(
            Location::of_offset(text, at),
            Location { line: 2, column: 8 }
        );
        assert_eq!(Location::of_offset(text, 999).line, 3);
    }

    #[test]
    fn problems_display_like_a_compiler() {
        let p = Problem::new(
            Path::new("/etc/vault/vault.toml"),
            Some(Location { line: 4, column: 2 }),
            "bad",
        )
        .with_help("write good");
        assert_eq!(
            p.to_string(),
            "/etc/vault/vault.toml:4:2: bad\n  help: write good"
        );
        let p = Problem::new(Path::new("f.toml"), None, "bad");
        assert_eq!(p.to_string(), "f.toml: bad");
    }
}
