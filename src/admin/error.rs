//! Every admin API failure, with its HTTP status and stable `code`, answered as OpenAI-shaped
//! JSON like the data plane's errors.

use http::StatusCode;

use crate::auth::passwords::PasswordError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No token, or one that is unknown, expired, idle too long or revoked.
    #[error("{message}")]
    Unauthenticated { message: String, code: &'static str },
    /// Wrong e-mail or password. One message for both, so an unknown account cannot be told
    /// apart from a wrong password.
    #[error("Incorrect e-mail or password.")]
    InvalidCredentials,
    #[error("This account uses multi-factor authentication: send the current 'totp' code (or a 'recovery_code').")]
    MfaRequired,
    #[error("The multi-factor code is wrong, expired or already used.")]
    InvalidMfaCode,
    #[error("{0}")]
    Forbidden(String),
    #[error("This action needs you to confirm your password: POST /admin/v1/reauth, then retry within {0} s.")]
    ReauthRequired(u64),
    #[error("{0}")]
    Restricted(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    BadRequest { message: String, code: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error("{method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    #[error("The request body exceeds {0} bytes.")]
    BodyTooLarge(usize),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
    /// A service the admin plane depends on (an SSO provider) failed.
    #[error("{0}")]
    Upstream(String, &'static str),
}

impl AdminError {
    pub fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError::BadRequest {
            message: message.into(),
            code: "invalid_request",
        }
    }

    pub fn unauthenticated(message: impl Into<String>, code: &'static str) -> AdminError {
        AdminError::Unauthenticated {
            message: message.into(),
            code,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthenticated { .. }
            | AdminError::InvalidCredentials
            | AdminError::MfaRequired
            | AdminError::InvalidMfaCode => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_)
            | AdminError::ReauthRequired(_)
            | AdminError::Restricted(_) => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest { .. }
            | AdminError::Password(PasswordError::Weak(_))
            | AdminError::Password(PasswordError::Reused(_)) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Store(e) => match e {
                StoreError::TenantExists(_) | StoreError::UserExists(_) => StatusCode::CONFLICT,
                StoreError::InvalidTenantName(_) | StoreError::InvalidEmail(_) => {
                    StatusCode::BAD_REQUEST
                }
                StoreError::TenantNotFound(_)
                | StoreError::KeyNotFound(_)
                | StoreError::UserNotFound(_) => StatusCode::NOT_FOUND,
                StoreError::Connect(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            AdminError::Password(_) | AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::Upstream(..) => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Unauthenticated { code, .. } | AdminError::BadRequest { code, .. } => code,
            AdminError::InvalidCredentials => "invalid_credentials",
            AdminError::MfaRequired => "mfa_required",
            AdminError::InvalidMfaCode => "invalid_mfa_code",
            AdminError::Forbidden(_) => "permission_denied",
            AdminError::ReauthRequired(_) => "reauthentication_required",
            AdminError::Restricted(_) => "session_restricted",
            AdminError::NotFound(_) => "not_found",
            AdminError::Conflict(_) => "conflict",
            AdminError::MethodNotAllowed { .. } => "method_not_allowed",
            AdminError::BodyTooLarge(_) => "body_too_large",
            AdminError::Password(e) => e.code(),
            AdminError::Store(e) => e.code(),
            AdminError::Internal(_) => "internal_error",
            AdminError::Upstream(_, code) => code,
        }
    }

    fn error_type(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// `{"error": {"message", "type", "code"}}`. Server-side failures are logged here with
    /// their detail and answered without it.
    pub fn body(&self) -> serde_json::Value {
        let message = if self.status().is_server_error() {
            tracing::error!(error = %self, code = self.code(), "admin API request failed");
            "The admin API could not complete the request; the gateway's log has the detail."
                .to_string()
        } else {
            self.to_string()
        };
        serde_json::json!({"error": {"message": message, "type": self.error_type(), "code": self.code()}})
    }
}
