//! `GET /archive` and `GET /archive/{number}`: the web version of issues whose send has started.
//! The same frozen HTML as the email, with no personal data and a signup link in place of the
//! unsubscribe link.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::AppState;
use super::error::PageError;
use super::pages::{base_context, not_found};
use crate::render::{Personalizer, SlotValues};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/archive", get(list))
        .route("/archive/{number}", get(show))
}

#[derive(Serialize)]
struct ArchiveEntry {
    number: i64,
    subject: String,
    date_range: String,
    url: String,
}

async fn list(State(state): State<AppState>) -> Result<Html<String>, PageError> {
    let issues = state.store.list_issues().await?;
    let entries: Vec<ArchiveEntry> = issues
        .into_iter()
        .filter(|i| i.status.is_public())
        .filter_map(|i| {
            Some(ArchiveEntry {
                number: i.number?,
                subject: i.subject.clone()?,
                date_range: i.week.date_range_label(),
                url: state
                    .settings
                    .http
                    .public_url
                    .join(&format!("archive/{}", i.number?)),
            })
        })
        .collect();
    let mut ctx = base_context(&state);
    ctx.insert("issues", &entries);
    Ok(Html(state.renderer.render_page("web/archive.html", &ctx)?))
}

async fn show(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Response, PageError> {
    let Ok(number) = number.parse::<i64>() else {
        return not_found(&state);
    };
    let Some(issue) = state.store.get_issue_by_number(number).await? else {
        return not_found(&state);
    };
    let (true, Some(html), Some(text)) = (issue.status.is_public(), issue.html, issue.text) else {
        return not_found(&state);
    };
    let values = SlotValues::for_archive(
        &state.settings.newsletter.name.0,
        &state.settings.http.public_url.join("/"),
    );
    Ok(Html(Personalizer::new(&html, &text).html(&values)).into_response())
}
