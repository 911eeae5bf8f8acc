//! Errors as A1111 writes them, `{"error", "detail", "body", "errors"}`, with the status that
//! says whose fault it was: 4xx for anything the request caused (422 a value, 404 a missing
//! init image or job, 413 a body too large, 401 credentials, 409 a finished job), 503 when the
//! queue is full, 500 only for the machine.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::jobs::Failure;

/// An error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// 503: seconds after which to try again.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 422: a value the request got wrong.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// 503 with `Retry-After`.
    pub fn busy(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
        }
    }
}

impl From<&Failure> for ApiError {
    fn from(f: &Failure) -> Self {
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, f.message.clone())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A1111 names the exception class; every error the request caused is an HTTPException
        let error =
            if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
                "RuntimeError"
            } else {
                "HTTPException"
            };
        let body = serde_json::json!({
            "error": error,
            "detail": self.detail,
            "body": "",
            "errors": "",
        });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        }
        response
    }
}
