//! Comparisons in: the command line's files, the admin API's JSON and the console's upload all
//! import through [`App::import_comparisons`], so every import is checked, written and logged
//! the same way.

use chrono::{DateTime, Utc};

use super::{Activity, Actor, App, OpsError};
use crate::comparisons::Comparison;
use crate::comparisons::import::parse_text;
use crate::comparisons::page::PageContext;
use crate::store::comparisons::{Source, Upserted};

/// One checked batch of comparisons to write in one transaction (a file, a request body).
#[derive(Debug)]
pub struct Incoming {
    /// Where they came from, for the report (a file path, `api`, an upload's name).
    pub origin: String,
    pub source: Source,
    pub comparisons: Vec<Comparison>,
    /// Page text dated "now" because no time was given: a slug already stored keeps its
    /// publication time, so an edit never moves a comparison to another week.
    pub keep_published_at: bool,
}

impl Incoming {
    /// A batch whose publication times stand as given (JSON, or a page with a time).
    pub fn new(origin: impl Into<String>, source: Source, comparisons: Vec<Comparison>) -> Self {
        Incoming {
            origin: origin.into(),
            source,
            comparisons,
            keep_published_at: false,
        }
    }
}

/// What an import did to one batch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    pub origin: String,
    pub upserted: Vec<Upserted>,
}

impl App {
    /// Writes every batch (each in its own transaction, in order) and logs one
    /// `comparisons.import` entry naming the slugs that changed. The batches are already
    /// checked: a front end parses every input before it calls this, so one bad file changes
    /// nothing.
    pub async fn import_comparisons(
        &self,
        actor: &Actor,
        batches: &[Incoming],
    ) -> Result<Vec<Imported>, OpsError> {
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let upserted = self
                .store()
                .upsert_comparisons(&batch.comparisons, batch.source, batch.keep_published_at)
                .await
                .map_err(|e| e.context(format!("importing {}", batch.origin)))?;
            out.push(Imported {
                origin: batch.origin.clone(),
                upserted,
            });
        }
        let slugs: Vec<&str> = out
            .iter()
            .flat_map(|i| &i.upserted)
            .map(|u| u.slug.as_str())
            .collect();
        self.forget_categories();
        self.log(actor, Activity::ComparisonsImport, None, &slugs.join(","))
            .await?;
        Ok(out)
    }

    /// Imports uploaded text: canonical JSON (object or array) or a published page, detected by
    /// its first character. Page text is dated `published_at` (default: now). Nothing is
    /// written when the text does not parse.
    pub async fn import_comparison_text(
        &self,
        actor: &Actor,
        name: &str,
        text: &str,
        published_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<Upserted>, OpsError> {
        let ctx = PageContext {
            base_url: self.settings().site.base_url.as_str(),
            published_at: published_at.unwrap_or_else(Utc::now),
        };
        let (source, comparisons) =
            parse_text(text, &ctx).map_err(|e| OpsError::invalid(name, e.to_string()))?;
        let batch = Incoming {
            origin: name.to_string(),
            source,
            comparisons,
            keep_published_at: source == Source::Page && published_at.is_none(),
        };
        let mut done = self.import_comparisons(actor, &[batch]).await?;
        Ok(done.pop().map(|i| i.upserted).unwrap_or_default())
    }
}
