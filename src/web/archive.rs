//! `GET /archive`, `GET /archive/{number}` and `GET /archive/feed.xml`: the web version of
//! issues whose send has started, and an Atom feed of them. The same frozen HTML as the email,
//! with no personal data and a signup link in place of the unsubscribe link.

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
        .route("/archive/feed.xml", get(feed))
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
    let issues = state.app.public_issues().await?;
    let entries: Vec<ArchiveEntry> = issues
        .into_iter()
        .filter_map(|i| {
            Some(ArchiveEntry {
                number: i.number?,
                subject: i.subject.clone()?,
                date_range: i.week.date_range_label(),
                url: state
                    .settings()
                    .http
                    .public_url
                    .join(&format!("archive/{}", i.number?)),
            })
        })
        .collect();
    let mut ctx = base_context(&state);
    ctx.insert("issues", &entries);
    ctx.insert("feed_url", &feed_url(&state));
    Ok(Html(
        state.renderer().render_page("web/archive.html", &ctx)?,
    ))
}

async fn show(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Response, PageError> {
    let Ok(number) = number.parse::<i64>() else {
        return not_found(&state);
    };
    let Some(issue) = state.app.public_issue(number).await? else {
        return not_found(&state);
    };
    let (Some(html), Some(text)) = (issue.html, issue.text) else {
        return not_found(&state);
    };
    let values = SlotValues::for_archive(
        &state.settings().newsletter.name.0,
        &state.settings().http.public_url.join("/"),
    );
    let page = Personalizer::new(&html, &text).html(&values);
    // Feed readers find the feed from the web version too.
    let link = format!(
        "<link rel=\"alternate\" type=\"application/atom+xml\" title=\"{}\" href=\"{}\">",
        crate::render::escape_html(&state.settings().newsletter.name.0),
        crate::render::escape_html(&feed_url(&state)),
    );
    let page = match page.find("</head>") {
        Some(i) => format!("{}{link}{}", &page[..i], &page[i..]),
        None => page,
    };
    Ok(Html(page).into_response())
}

fn feed_url(state: &AppState) -> String {
    state.settings().http.public_url.join("archive/feed.xml")
}

/// `GET /archive/feed.xml`: an Atom feed (RFC 4287) of the issues whose send has started,
/// newest first: title, date, link to the web version, and the matchups as the summary.
/// Nothing about any subscriber is in it.
async fn feed(State(state): State<AppState>) -> Result<Response, PageError> {
    use atom_syndication::{Entry, Feed, Link, Person, Text};
    let s = state.settings();
    let issues = state.app.public_issues().await?;
    let titles = state.app.issue_item_titles().await?;
    let date = |t: chrono::DateTime<chrono::Utc>| t.fixed_offset();
    let mut entries = Vec::new();
    for i in &issues {
        let (Some(number), Some(subject)) = (i.number, i.subject.as_ref()) else {
            continue;
        };
        let url = s.http.public_url.join(&format!("archive/{number}"));
        let when = date(i.started_at.unwrap_or(i.created_at));
        let mut entry = Entry::default();
        entry.set_id(url.clone());
        entry.set_title(Text::plain(subject.clone()));
        entry.set_updated(when);
        entry.set_published(Some(when));
        entry.set_links(vec![Link {
            href: url,
            rel: "alternate".into(),
            mime_type: Some("text/html".into()),
            ..Default::default()
        }]);
        let matchups = titles.get(&i.id).cloned().unwrap_or_default();
        entry.set_summary(Some(Text::plain(format!(
            "Issue #{number} · {} · {}",
            i.week.date_range_label(),
            matchups.join(" · ")
        ))));
        entries.push(entry);
    }
    let mut feed = Feed::default();
    let self_url = feed_url(&state);
    feed.set_id(self_url.clone());
    feed.set_title(Text::plain(s.newsletter.name.0.clone()));
    feed.set_subtitle(Some(Text::plain(format!(
        "Every issue of {}: the week's AI tool matchups from {}",
        s.newsletter.name.0, s.site.name.0
    ))));
    feed.set_updated(
        entries
            .first()
            .map(|e| *e.updated())
            .unwrap_or_else(|| date(chrono::DateTime::UNIX_EPOCH)),
    );
    feed.set_authors(vec![Person {
        name: s.site.name.0.clone(),
        uri: Some(s.site.base_url.as_str().to_string()),
        ..Default::default()
    }]);
    feed.set_links(vec![
        Link {
            href: self_url,
            rel: "self".into(),
            mime_type: Some("application/atom+xml".into()),
            ..Default::default()
        },
        Link {
            href: s.http.public_url.join("archive"),
            rel: "alternate".into(),
            mime_type: Some("text/html".into()),
            ..Default::default()
        },
    ]);
    feed.set_entries(entries);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/atom+xml; charset=utf-8",
        )],
        feed.to_string(),
    )
        .into_response())
}
