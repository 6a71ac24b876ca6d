//! `GET /metrics`: every metric in the OpenMetrics text format, which
//! Prometheus scrapes natively.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::WebState;

/// The metrics route.
pub(super) fn routes() -> Router<WebState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<WebState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}
