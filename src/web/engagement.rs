//! Readers talk back: `GET|POST /vote/{token}`, `GET /votes/{slug}.json` (CORS for
//! `signup.allowed_origins`), `GET /r/{token}` and `GET /privacy`.
//!
//! A GET of a vote link shows one button and changes nothing (mail scanners follow links); the
//! POST counts. A link that is not genuine, or whose reader has left or been erased: 404.
//!
//! Rate limits: a genuine vote link spends its reader's quota, one that is not genuine the
//! client address's [`Bucket::Links`] quota (see [`super::limits`]); a click is never refused.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::AppState;
use super::client::ClientAddr;
use super::error::PageError;
use super::limits::Bucket;
use super::pages::{base_context, message_page, not_found};
use crate::app::engagement::VoteLink;
use crate::engagement::VoteClaim;

pub fn router(state: &AppState) -> Router<AppState> {
    // Rate-limited in the handlers, by reader for genuine links (see `admit`).
    let votes = Router::new()
        .route("/vote/{token}", get(vote_page).post(vote))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024));
    // A click is never refused: readers behind one office or carrier address share a quota,
    // and a "slow down" page instead of the comparison is worse than a click not counted.
    let clicks = Router::new().route("/r/{token}", get(click));
    Router::new()
        .merge(super::headers::token_pages(votes.merge(clicks)))
        .route("/votes/{file}", get(tallies).layer(tallies_cors(state)))
        .route("/privacy", get(privacy))
}

/// The tallies may be read by the comparison site's pages (the signup's origins), no one else's.
fn tallies_cors(state: &AppState) -> CorsLayer {
    let allowed: Vec<HeaderValue> = super::embed::origins(state)
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET])
        .max_age(std::time::Duration::from_secs(3600))
}

fn vote_context(state: &AppState, v: &VoteLink) -> tera::Context {
    let mut ctx = base_context(state);
    ctx.insert("comparison_title", &v.comparison_title);
    ctx.insert("comparison_url", &v.comparison_url);
    ctx.insert("tool", &v.tool);
    ctx.insert("choice", v.choice.as_str());
    ctx.insert("choice_label", v.choice.label());
    ctx
}

/// Why a vote request is not let through.
enum Refusal {
    /// The link is not genuine: 404.
    NotGenuine,
    /// Over the quota it counts against: 429 with `Retry-After` (seconds).
    TooMany(u64),
}

impl Refusal {
    fn answer(self, state: &AppState) -> Result<Response, PageError> {
        match self {
            Refusal::NotGenuine => not_found(state),
            Refusal::TooMany(retry_after) => Ok(super::limits::refused(state, false, retry_after)),
        }
    }
}

/// Lets a vote request through, spending the quota of whoever it counts against: the reader a
/// genuine link names (readers behind one office or carrier address each vote on every tool of
/// an issue; a genuine vote replaces, never adds), else the client's address (a stranger
/// trying tokens).
fn admit(state: &AppState, client: ClientAddr, token: &str) -> Result<VoteClaim, Refusal> {
    let Some(claim) = state.app.vote_claim(token) else {
        return Err(match state.rate_limits.check(Bucket::Links, client.0) {
            Ok(()) => Refusal::NotGenuine,
            Err(retry_after) => {
                tracing::info!(client = %client.0, "vote link not genuine, rate limited");
                Refusal::TooMany(retry_after)
            }
        });
    };
    if let Err(retry_after) = state.rate_limits.check_reader(claim.subscriber_id) {
        tracing::info!(
            subscriber_id = claim.subscriber_id,
            "vote link rate limited"
        );
        return Err(Refusal::TooMany(retry_after));
    }
    Ok(claim)
}

async fn vote_page(
    State(state): State<AppState>,
    client: ClientAddr,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let claim = match admit(&state, client, &token) {
        Ok(claim) => claim,
        Err(refusal) => return refusal.answer(&state),
    };
    let Some(v) = state.app.vote_link(claim).await? else {
        return not_found(&state);
    };
    let mut ctx = vote_context(&state, &v);
    ctx.insert(
        "action_url",
        &state
            .settings()
            .http
            .public_url
            .join(&format!("vote/{token}")),
    );
    Ok(Html(state.renderer().render_page("web/vote.html", &ctx)?).into_response())
}

async fn vote(
    State(state): State<AppState>,
    client: ClientAddr,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let claim = match admit(&state, client, &token) {
        Ok(claim) => claim,
        Err(refusal) => return refusal.answer(&state),
    };
    let Some(v) = state.app.cast_vote(claim).await? else {
        return not_found(&state);
    };
    message_page(
        &state,
        StatusCode::OK,
        "Thanks, your vote is counted",
        &format!(
            "{} for {} in “{}”. Changed your mind? Use the other link in the email: your vote is replaced, never counted twice.",
            v.choice.label(),
            v.tool,
            v.comparison_title
        ),
        Some((&v.comparison_url, "Read the full comparison")),
    )
}

/// `GET /r/{token}`: 302 to the comparison, counting one click when `tracking.clicks` is on
/// (the app decides); HEAD (link checkers) counts nothing, and neither does a GET over the
/// client's `http.rate_limit_per_minute` (it is still sent on).
async fn click(
    State(state): State<AppState>,
    client: ClientAddr,
    method: Method,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    // Only a GET that could count spends the client's quota.
    let wanted = method == Method::GET
        && state.app.counts_clicks()
        && match state.rate_limits.check(Bucket::Links, client.0) {
            Ok(()) => true,
            Err(_) => {
                tracing::info!(client = %client.0, "click over the rate limit: sent on, not counted");
                false
            }
        };
    let Some(url) = state.app.follow_click(&token, wanted).await? else {
        return not_found(&state);
    };
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

async fn tallies(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, PageError> {
    let Some(slug) = file.strip_suffix(".json") else {
        return not_found(&state);
    };
    match state.app.vote_tallies(slug).await? {
        Some(t) => Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(t)).into_response()),
        None => Ok((
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no comparison {slug:?}") })),
        )
            .into_response()),
    }
}

async fn privacy(State(state): State<AppState>) -> Result<Response, PageError> {
    let mut ctx = base_context(&state);
    ctx.insert("clicks", &state.settings().tracking.clicks);
    Ok(Html(state.renderer().render_page("web/privacy.html", &ctx)?).into_response())
}
