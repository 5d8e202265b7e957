//! `GET /api/v1/alerts`: `{"alerts": [...]}`, active alerts (firing, then pending) and then
//! the recently resolved ones, newest first, each with its evidence and next step.
use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::model::Alert;
use crate::state::AppState;

#[derive(Serialize)]
struct AlertList {
    alerts: Vec<Alert>,
}

pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    let body = AlertList {
        alerts: state.alerts.alerts(),
    };
    match serde_json::to_string(&body) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
