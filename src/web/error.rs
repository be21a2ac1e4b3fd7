//! One mapping from errors to responses: client errors get a clear message and the right status;
//! internal errors are logged in full and shown as a generic 500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

/// An error from an admin API handler (JSON body `{"error": …, "field": …}`).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("the admin API is disabled: set admin.token")]
    Disabled,
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::app::OpsError> for ApiError {
    fn from(e: crate::app::OpsError) -> Self {
        use crate::app::OpsError;
        match e {
            e @ OpsError::NotFound(_) => ApiError::NotFound(e.to_string()),
            e @ OpsError::WrongState { .. } => ApiError::Conflict(e.to_string()),
            OpsError::Invalid { field, message } => ApiError::Invalid { field, message },
            OpsError::Forbidden(message) => ApiError::Forbidden(message),
            OpsError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, field) = match &self {
            ApiError::Unauthorized | ApiError::Disabled => (StatusCode::UNAUTHORIZED, None),
            ApiError::Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, field.clone()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            ApiError::Internal(e) => {
                crate::log_repeated!(error, "web:api", e, "admin API request failed");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "error": "internal error; see the server log" })),
                )
                    .into_response();
            }
        };
        let mut response = (
            status,
            Json(json!({ "error": self.to_string(), "field": field })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A page request that failed inside: logged in full, shown as a generic 500. (Client errors
/// are ordinary responses: rendered pages with a 4xx status.)
#[derive(Debug)]
pub enum PageError {
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        PageError::Internal(e)
    }
}

const GENERIC_500: &str = "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Something went wrong</title>\
<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em\">\
<h1>Something went wrong</h1><p>We could not complete that request. Please try again in a minute.</p></body></html>";

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Internal(e) => {
                crate::log_repeated!(error, "web:page", e, "page request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, Html(GENERIC_500)).into_response()
            }
        }
    }
}
