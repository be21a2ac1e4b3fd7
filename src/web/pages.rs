//! Helpers shared by the HTML pages.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tera::Context;

use super::AppState;
use super::error::PageError;

/// The values every page template uses (see `templates/web/base.html`).
pub fn base_context(state: &AppState) -> Context {
    crate::render::page_context(state.settings())
}

/// Renders `templates/web/message.html`: a heading, a sentence and an optional button.
pub fn message_page(
    state: &AppState,
    status: StatusCode,
    heading: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Result<Response, PageError> {
    let mut ctx = base_context(state);
    ctx.insert("heading", heading);
    ctx.insert("message", message);
    ctx.insert("link_url", &link.map(|(url, _)| url.to_string()));
    ctx.insert("link_text", &link.map(|(_, text)| text.to_string()));
    let html = state.renderer().render_page("web/message.html", &ctx)?;
    Ok((status, Html(html)).into_response())
}

/// The 404 page.
pub fn not_found(state: &AppState) -> Result<Response, PageError> {
    message_page(
        state,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address.",
        Some((
            &state.settings().http.public_url.join("/"),
            "Go to the start page",
        )),
    )
}
