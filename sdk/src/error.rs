//! The one error type of the SDK: host capability errors plus what handlers need.

use crate::__private::linli::plugin::types::Error as WitError;

/// An error from a host capability or a handler. Returned from a [`crate::Router`] handler,
/// it becomes a JSON error response with the matching status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The host does not provide this capability (yet). → 503
    Unavailable(String),
    /// The plugin was not granted this capability. → 403
    Denied(String),
    /// A malformed argument or request. → 400
    Invalid(String),
    /// A named limit was hit. → 413
    Quota(String),
    /// Not found. → 404
    NotFound(String),
    /// The host failed; retry later. → 500
    Internal(String),
    /// A value could not be (de)serialised as JSON. → 400 for request bodies, 500 otherwise
    Json(String),
    /// A request the handler refuses, with the status to answer.
    Http(u16, String),
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Unavailable(_) => 503,
            Error::Denied(_) => 403,
            Error::Invalid(_) | Error::Json(_) => 400,
            Error::Quota(_) => 413,
            Error::NotFound(_) => 404,
            Error::Internal(_) => 500,
            Error::Http(status, _) => *status,
        }
    }

    /// A stable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unavailable(_) => "unavailable",
            Error::Denied(_) => "denied",
            Error::Invalid(_) => "invalid",
            Error::Quota(_) => "quota",
            Error::NotFound(_) => "not_found",
            Error::Internal(_) => "internal",
            Error::Json(_) => "invalid_json",
            Error::Http(..) => "refused",
        }
    }

    fn message(&self) -> &str {
        match self {
            Error::Unavailable(m)
            | Error::Denied(m)
            | Error::Invalid(m)
            | Error::Quota(m)
            | Error::NotFound(m)
            | Error::Internal(m)
            | Error::Json(m)
            | Error::Http(_, m) => m,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for Error {}

impl From<WitError> for Error {
    fn from(e: WitError) -> Self {
        match e {
            WitError::Unavailable(m) => Error::Unavailable(m),
            WitError::Denied(m) => Error::Denied(m),
            WitError::Invalid(m) => Error::Invalid(m),
            WitError::Quota(m) => Error::Quota(m),
            WitError::NotFound(m) => Error::NotFound(m),
            WitError::Internal(m) => Error::Internal(m),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e.to_string())
    }
}
