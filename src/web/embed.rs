//! The signup on other sites' pages: CORS for `POST /subscribe` from `signup.allowed_origins`,
//! the form's `redirect` back to one of them, and `GET /embed` with copy-paste snippets.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::AppState;
use super::error::PageError;
use super::pages::base_context;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/embed", get(page))
        .route("/embed/snippet.html", get(raw))
}

/// The allowed origins of these settings.
pub fn origins(state: &AppState) -> Vec<String> {
    state.settings().signup.origins(&state.settings().site)
}

/// CORS for `/subscribe`: preflight and actual requests from the allowed origins only (JSON or
/// form), no credentials (a signup needs no cookie).
pub fn cors(state: &AppState) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins(state)
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::ACCEPT])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Where a form's `redirect` may send the reader: a URL on an allowed origin, with the outcome
/// added to its query (`signup=ok`, or `signup=error` and `message`). `None` for any other URL.
pub fn redirect_target(
    state: &AppState,
    redirect: &str,
    outcome: Result<(), &str>,
) -> Option<String> {
    let mut url = url::Url::parse(redirect.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    if !origins(state).contains(&origin) {
        return None;
    }
    url.set_fragment(None);
    {
        let mut q = url.query_pairs_mut();
        match outcome {
            Ok(()) => q.append_pair("signup", "ok"),
            Err(message) => q
                .append_pair("signup", "error")
                .append_pair("message", message),
        };
    }
    Some(url.to_string())
}

/// The two snippets (plain form, fetch) for this installation.
fn snippets(state: &AppState) -> (String, String) {
    let s = state.settings();
    let action = s.http.public_url.join("subscribe");
    let back = s.site.base_url.as_str();
    let name = &s.newsletter.name.0;
    let form = format!(
        r#"<form method="post" action="{action}">
  <input type="hidden" name="redirect" value="{back}">
  <label>Email <input type="email" name="email" required autocomplete="email"></label>
  <label>First name (optional) <input type="text" name="name" autocomplete="given-name"></label>
  <button type="submit">Get {name}</button>
</form>"#
    );
    let fetch = format!(
        r#"<form id="verdicts-signup">
  <label>Email <input type="email" name="email" required autocomplete="email"></label>
  <label>First name (optional) <input type="text" name="name" autocomplete="given-name"></label>
  <button type="submit">Get {name}</button>
  <p role="status" aria-live="polite"></p>
</form>
<script>
document.getElementById("verdicts-signup").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const form = event.target, status = form.querySelector("[role=status]");
  status.textContent = "Sending…";
  try {{
    const response = await fetch("{action}", {{
      method: "POST",
      headers: {{ "Content-Type": "application/json" }},
      body: JSON.stringify({{ email: form.email.value, name: form.name.value }}),
    }});
    const answer = await response.json();
    status.textContent = answer.message || answer.error || "Something went wrong.";
    if (response.ok) form.reset();
  }} catch (e) {{
    status.textContent = "We could not reach the newsletter. Please try again later.";
  }}
}});
</script>"#
    );
    (form, fetch)
}

async fn page(State(state): State<AppState>) -> Result<Html<String>, PageError> {
    let (form, fetch) = snippets(&state);
    let mut ctx = base_context(&state);
    ctx.insert("origins", &origins(&state));
    ctx.insert("form_snippet", &form);
    ctx.insert("fetch_snippet", &fetch);
    ctx.insert(
        "raw_url",
        &state.settings().http.public_url.join("embed/snippet.html"),
    );
    Ok(Html(state.renderer().render_page("web/embed.html", &ctx)?))
}

/// Both snippets as one plain file, to download or `curl` into a page.
async fn raw(State(state): State<AppState>) -> Response {
    let (form, fetch) = snippets(&state);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "<!-- {name}: plain form -->\n{form}\n\n<!-- {name}: JavaScript -->\n{fetch}\n",
            name = state.settings().newsletter.name.0
        ),
    )
        .into_response()
}
