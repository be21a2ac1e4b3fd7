//! Reading comparison files: canonical JSON (one object or an array) or published page text,
//! detected per file by its first non-blank character.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::page::PageContext;
use super::{Comparison, InvalidComparison};
use crate::store::comparisons::Source;

/// Largest comparison file we read; a real one is a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// A file that could not be read as comparisons: the path and what is wrong where.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", .path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

/// One file's comparisons, checked and ready to store in one transaction.
#[derive(Debug)]
pub struct ParsedFile {
    pub path: PathBuf,
    pub source: Source,
    pub comparisons: Vec<Comparison>,
}

/// The bookkeeping fields `verdicts comparisons list --json` adds to each comparison. They
/// describe the stored row, not the comparison, so an import accepts and ignores them: a
/// listing imports back unchanged. They are still checked for their type.
const LISTING_FIELDS: [ListingField; 2] = [
    (
        "revision",
        |v| v.as_u64().is_some_and(|n| n >= 1),
        "a revision number (1 or more)",
    ),
    (
        "issue_week",
        |v| v.is_null() || v.is_string(),
        "an ISO week or null",
    ),
];

/// A bookkeeping field: its name, the check of its value, and what the check expects.
type ListingField = (&'static str, fn(&serde_json::Value) -> bool, &'static str);

/// Takes the listing's bookkeeping fields off one comparison object.
fn without_listing_fields(
    mut item: serde_json::Value,
    at: &str,
) -> Result<serde_json::Value, InvalidComparison> {
    if let Some(object) = item.as_object_mut() {
        for (name, valid, expected) in LISTING_FIELDS {
            if let Some(value) = object.remove(name)
                && !valid(&value)
            {
                return Err(InvalidComparison::new(
                    format!("{at}{name}"),
                    format!("expected {expected}, found {value}"),
                ));
            }
        }
    }
    Ok(item)
}

/// Parses canonical JSON text: one comparison object or an array of them (also the output of
/// `verdicts comparisons list --json`, whose `revision` and `issue_week` are ignored).
pub fn parse_json(text: &str) -> Result<Vec<Comparison>, InvalidComparison> {
    // Strict: a duplicate key is an error, not "the last one wins".
    let value: serde_json::Value = crate::json::strict_value(text.as_bytes()).map_err(|e| {
        InvalidComparison::new(
            format!("line {} column {}", e.line(), e.column()),
            format!("malformed JSON: {e}"),
        )
    })?;
    match value {
        serde_json::Value::Array(items) => {
            if items.is_empty() {
                return Err(InvalidComparison::new(
                    "(top level)",
                    "the array holds no comparisons",
                ));
            }
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let item = without_listing_fields(item, &format!("[{i}]."))?;
                let c = Comparison::from_json_value(item)
                    .map_err(|e| InvalidComparison::new(format!("[{i}].{}", e.field), e.message))?;
                if !seen.insert(c.slug().to_string()) {
                    return Err(InvalidComparison::new(
                        format!("[{i}].slug"),
                        format!("{:?} appears twice in this file", c.slug()),
                    ));
                }
                out.push(c);
            }
            Ok(out)
        }
        value @ serde_json::Value::Object(_) => Ok(vec![Comparison::from_json_value(
            without_listing_fields(value, "")?,
        )?]),
        _ => Err(InvalidComparison::new(
            "(top level)",
            "expected a comparison object or an array of them",
        )),
    }
}

/// Parses text that is either JSON or a page, deciding by the first non-blank character.
pub fn parse_text(
    text: &str,
    ctx: &PageContext<'_>,
) -> Result<(Source, Vec<Comparison>), InvalidComparison> {
    let first = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .next();
    match first {
        None => Err(InvalidComparison::new("line 1", "the file is empty")),
        Some('{') | Some('[') => Ok((Source::Json, parse_json(text)?)),
        Some(_) => Ok((Source::Page, vec![Comparison::from_page_text(text, ctx)?])),
    }
}

/// Reads and checks every file; stops at nothing, reporting every bad file.
pub fn read_files(
    paths: &[PathBuf],
    base_url: &str,
    published_at: DateTime<Utc>,
) -> Result<Vec<ParsedFile>, Vec<FileError>> {
    let ctx = PageContext {
        base_url,
        published_at,
    };
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    let mut seen_slugs: HashSet<String> = HashSet::new();
    for path in paths {
        match read_one(path, &ctx) {
            Ok((source, comparisons)) => {
                if let Some(dup) = comparisons.iter().find(|c| seen_slugs.contains(c.slug())) {
                    errors.push(FileError {
                        path: path.clone(),
                        message: format!("slug {:?} is also in an earlier file", dup.slug()),
                    });
                    continue;
                }
                seen_slugs.extend(comparisons.iter().map(|c| c.slug().to_string()));
                parsed.push(ParsedFile {
                    path: path.clone(),
                    source,
                    comparisons,
                });
            }
            Err(message) => errors.push(FileError {
                path: path.clone(),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

fn read_one(path: &Path, ctx: &PageContext<'_>) -> Result<(Source, Vec<Comparison>), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {} MiB", MAX_FILE_BYTES / 1024 / 1024));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    parse_text(&text, ctx).map_err(|e| e.to_string())
}
