//! Error types: the BigQuery error envelope served over HTTP, and the library's own error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A BigQuery API error, rendered as BigQuery's JSON error envelope.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// BigQuery error reason (`invalid`, `notFound`, `duplicate`, `backendError`, ...).
    pub reason: String,
    /// Human-readable message, worded like BigQuery's where known.
    pub message: String,
}

impl ApiError {
    /// Builds an error with an explicit HTTP status.
    pub fn new(status: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// 400 `invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid", message)
    }

    /// 404 `notFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "notFound", message)
    }

    /// 409 `duplicate`.
    pub fn duplicate(message: impl Into<String>) -> Self {
        Self::new(409, "duplicate", message)
    }

    /// 500 `internalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internalError", message)
    }

    /// Builds the error a job failure with `reason` would answer over HTTP (used by
    /// `jobs.query` / `jobs.getQueryResults` on a failed job).
    pub fn from_job_error(err: &ErrorProto) -> Self {
        Self::new(
            status_for_reason(&err.reason),
            err.reason.clone(),
            err.message.clone(),
        )
    }

    /// The ErrorProto form, as stored in a job's `status.errorResult`.
    pub fn to_proto(&self) -> ErrorProto {
        ErrorProto {
            reason: self.reason.clone(),
            message: self.message.clone(),
            location: None,
        }
    }

    /// BigQuery's error envelope.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": self.status,
                "message": self.message,
                "status": status_name(self.status),
                "errors": [{"reason": self.reason, "message": self.message, "domain": "global"}],
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

/// BigQuery's ErrorProto (`status.errorResult`, `status.errors[]`, `insertErrors[].errors[]`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorProto {
    /// Error reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Where the error happened (a field name for insertAll errors), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl ErrorProto {
    /// Builds an ErrorProto.
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorProto {
            reason: reason.into(),
            message: message.into(),
            location: None,
        }
    }
}

/// The gRPC-style status name BigQuery puts in `error.status` for an HTTP code.
pub fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if code >= 500 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

/// The HTTP status BigQuery answers for an error reason (see the reference table).
pub fn status_for_reason(reason: &str) -> u16 {
    match reason {
        "notFound" => 404,
        "duplicate" => 409,
        "backendError" => 503,
        "internalError" => 500,
        "rateLimitExceeded" | "quotaExceeded" | "accessDenied" | "responseTooLarge"
        | "billingNotEnabled" => 403,
        _ => 400,
    }
}

/// Errors of the library API ([`crate::Emulator`]).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listening socket could not be bound.
    #[error(
        "cannot bind 127.0.0.1:{port}: {source}\nhint: pick another port, or 0 for a random one"
    )]
    Bind {
        /// Requested port.
        port: u16,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The persisted state under `--data` could not be read.
    #[error(
        "cannot load emulator state from {path}: {message}\nhint: move the directory away to start empty"
    )]
    Load {
        /// The data directory.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A BigQuery-level failure (same reason and message the REST API would answer).
    #[error("{0}")]
    Api(#[from] ApiError),
}
