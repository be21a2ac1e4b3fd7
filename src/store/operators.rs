//! The operator log: who (CLI or API) did what, and when.

use anyhow::Context;
use chrono::Utc;

use super::{Store, to_millis};

impl Store {
    /// Records one operator action.
    pub async fn log_operator_action(
        &self,
        actor: &str,
        action: &str,
        issue_id: Option<i64>,
        detail: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO operator_log (at, actor, action, issue_id, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(to_millis(Utc::now()))
        .bind(actor)
        .bind(action)
        .bind(issue_id)
        .bind(detail)
        .execute(&self.writer)
        .await
        .context("writing the operator log")?;
        tracing::info!(actor, action, issue_id, detail, "operator action");
        Ok(())
    }
}
