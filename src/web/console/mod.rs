//! The operator console (`console:` in the config): a small server-rendered
//! web application on its own listener (loopback by default) over the
//! store's records, for operators logged in with a password.
//!
//! - `GET/POST /login`, `POST /logout`: sessions (`auth`), rate-limited
//!   logins, CSRF tokens on every POST;
//! - `/` the funnel, `/calls` (and `/calls/{id}`), `/deliveries`, `/fraud`,
//!   `/flows`, `/active`: pages (`pages`), each behind a live session, else
//!   a redirect to `/login`.
//!
//! Every response carries a strict Content-Security-Policy (no script at
//! all, inline style only), `no-store` caching and no framing. Nothing is
//! logged with a password, a token or a number.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::ConsoleConfig;
use crate::store::operators::Session;
use crate::store::{now_ms, Store};
use crate::telemetry::ActiveCalls;

pub mod auth;
pub mod graph;
mod html;
pub mod pages;

pub use graph::{FlowGraph, GraphStep};

/// The flows the console draws, asked for at each request (they reload).
pub type FlowSource = Arc<dyn Fn() -> Vec<FlowGraph> + Send + Sync>;

/// What the console's handlers share; cheap to clone.
#[derive(Clone)]
pub struct ConsoleState {
    /// The records, operators and sessions.
    pub store: Arc<Store>,
    /// The settings.
    pub cfg: ConsoleConfig,
    /// Calls in progress; `None` when the console runs apart from serve.
    pub active: Option<Arc<ActiveCalls>>,
    /// The loaded flows.
    pub flows: FlowSource,
    /// Failed logins.
    pub limiter: Arc<auth::LoginLimiter>,
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleState")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl ConsoleState {
    /// The console over `store` with `cfg`.
    pub fn new(
        store: Arc<Store>,
        cfg: ConsoleConfig,
        active: Option<Arc<ActiveCalls>>,
        flows: FlowSource,
    ) -> ConsoleState {
        let limiter = Arc::new(auth::LoginLimiter::new(cfg.login_attempts));
        ConsoleState {
            store,
            cfg,
            active,
            flows,
            limiter,
        }
    }
}

/// The console's routes.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/", get(page_funnel))
        .route("/calls", get(page_calls))
        .route("/calls/{id}", get(page_call))
        .route("/deliveries", get(page_deliveries))
        .route("/fraud", get(page_fraud))
        .route("/flows", get(page_flows))
        .route("/active", get(page_active))
        .layer(axum::middleware::map_response(secure_headers))
        .layer(DefaultBodyLimit::max(8 * 1024))
        .with_state(state)
}

/// Serve the console on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, state: ConsoleState) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn see_other(to: &str, cookies: &[String]) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// Run `f` on the blocking pool; a panic or a cancelled task is a 500.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// The request's live session, if any.
async fn session(state: &ConsoleState, headers: &HeaderMap) -> Option<Session> {
    let token = auth::cookie(headers, auth::SESSION_COOKIE)?;
    let store = state.store.clone();
    blocking(move || store.session(&token, now_ms()))
        .await?
        .ok()
        .flatten()
}

async fn login_form(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    if session(&state, &headers).await.is_some() {
        return see_other("/", &[]);
    }
    fresh_login(&state, StatusCode::OK, None)
}

/// The login form with a new pre-session CSRF token (and its cookie).
fn fresh_login(state: &ConsoleState, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = auth::token();
    let mut r = html_response(status, html::login_page(&csrf, error));
    let c = auth::set_cookie(
        auth::LOGIN_COOKIE,
        &csrf,
        Duration::from_secs(3600),
        state.cfg.secure_cookie,
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn form(body: &Bytes) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn login(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let posted = f.get("csrf").map(String::as_str).unwrap_or("");
    let expected = auth::cookie(&headers, auth::LOGIN_COOKIE).unwrap_or_default();
    if !auth::same_token(posted, &expected) {
        return fresh_login(
            &state,
            StatusCode::FORBIDDEN,
            Some("The form expired; please log in again."),
        );
    }
    let name = f.get("name").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let ip_key = format!("ip:{}", peer.ip());
    let name_key = format!("name:{}", name.to_ascii_lowercase());
    if state.limiter.blocked(&[&ip_key, &name_key]) {
        warn!(client = %peer.ip(), "console login refused: too many failed attempts");
        return fresh_login(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed logins; wait a minute and try again."),
        );
    }
    let store = state.store.clone();
    let ttl = state.cfg.session_ttl;
    let who = name.clone();
    let result = blocking(
        move || -> Result<Option<(String, String)>, crate::store::StoreError> {
            let hash = store.operator_hash(&who)?;
            // A name that does not exist still costs one hash, so timing does
            // not tell which names exist.
            let ok = match &hash {
                Some(h) => auth::verify_password(&password, h),
                None => {
                    let _ = auth::verify_password(&password, DUMMY_HASH);
                    false
                }
            };
            if !ok {
                return Ok(None);
            }
            let (token, csrf) = (auth::token(), auth::token());
            let now = now_ms();
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            store.create_session(&token, &who, &csrf, now, now.saturating_add(ttl_ms))?;
            Ok(Some((token, csrf)))
        },
    )
    .await;
    match result {
        Some(Ok(Some((token, _)))) => {
            info!(operator = %name, client = %peer.ip(), "console login");
            let secure = state.cfg.secure_cookie;
            see_other(
                "/",
                &[
                    auth::set_cookie(auth::SESSION_COOKIE, &token, ttl, secure),
                    auth::set_cookie(auth::LOGIN_COOKIE, "", Duration::ZERO, secure),
                ],
            )
        }
        Some(Ok(None)) => {
            state.limiter.failed(&[&ip_key, &name_key]);
            warn!(client = %peer.ip(), "console login failed");
            fresh_login(
                &state,
                StatusCode::UNAUTHORIZED,
                Some("Wrong operator name or password."),
            )
        }
        Some(Err(e)) => {
            warn!(error = %e, "console login: store error");
            html_response(StatusCode::INTERNAL_SERVER_ERROR, "store error".into())
        }
        None => html_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
    }
}

/// An Argon2id hash of a random password, checked against when the name
/// is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Qm9ndXNCb2d1c0JvZ3VzQm9ndXNCb2d1c0JvZ3VzQm8";

async fn logout(State(state): State<ConsoleState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(sess) = session(&state, &headers).await else {
        return see_other("/login", &[]);
    };
    let f = form(&body);
    if !auth::same_token(f.get("csrf").map(String::as_str).unwrap_or(""), &sess.csrf) {
        return html_response(StatusCode::FORBIDDEN, "bad CSRF token\n".into());
    }
    if let Some(token) = auth::cookie(&headers, auth::SESSION_COOKIE) {
        let store = state.store.clone();
        let _ = blocking(move || store.end_session(&token)).await;
    }
    info!(operator = %sess.operator, "console logout");
    see_other(
        "/login",
        &[auth::set_cookie(
            auth::SESSION_COOKIE,
            "",
            Duration::ZERO,
            state.cfg.secure_cookie,
        )],
    )
}

/// Render a page for a live session with `body` (run on the blocking
/// pool), or send the browser to log in.
async fn guarded(
    state: ConsoleState,
    headers: HeaderMap,
    title: &'static str,
    path: &'static str,
    body: impl FnOnce(&ConsoleState) -> Result<Option<String>, pages::PageError> + Send + 'static,
) -> Response {
    let Some(sess) = session(&state, &headers).await else {
        return see_other("/login", &[]);
    };
    let st = state.clone();
    match blocking(move || body(&st)).await {
        Some(Ok(Some(b))) => html_response(
            StatusCode::OK,
            html::page(title, path, &sess.operator, &sess.csrf, &b),
        ),
        Some(Ok(None)) => html_response(
            StatusCode::NOT_FOUND,
            html::page(title, path, &sess.operator, &sess.csrf, "<p>Not found.</p>"),
        ),
        Some(Err(pages::PageError::BadInput(m))) => html_response(
            StatusCode::BAD_REQUEST,
            html::page(
                title,
                path,
                &sess.operator,
                &sess.csrf,
                &format!("<p class=\"err\">{}</p>", html::esc(&m)),
            ),
        ),
        Some(Err(e)) => {
            warn!(error = %e, page = path, "console page failed");
            html_response(StatusCode::INTERNAL_SERVER_ERROR, "store error\n".into())
        }
        None => html_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into()),
    }
}

fn query(uri: &Uri) -> pages::Query {
    pages::Query::parse(uri.query().unwrap_or(""))
}

async fn page_funnel(State(s): State<ConsoleState>, headers: HeaderMap, uri: Uri) -> Response {
    let q = query(&uri);
    guarded(s, headers, "Authentication funnel", "/", move |st| {
        pages::dashboard(&st.store, &q).map(Some)
    })
    .await
}

async fn page_calls(State(s): State<ConsoleState>, headers: HeaderMap, uri: Uri) -> Response {
    let q = query(&uri);
    guarded(s, headers, "Calls", "/calls", move |st| {
        pages::calls(&st.store, &q).map(Some)
    })
    .await
}

async fn page_call(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    guarded(s, headers, "Call", "/calls", move |st| {
        pages::call(&st.store, &id)
    })
    .await
}

async fn page_deliveries(State(s): State<ConsoleState>, headers: HeaderMap, uri: Uri) -> Response {
    let q = query(&uri);
    guarded(s, headers, "Code deliveries", "/deliveries", move |st| {
        pages::deliveries(&st.store, &q).map(Some)
    })
    .await
}

async fn page_fraud(State(s): State<ConsoleState>, headers: HeaderMap, uri: Uri) -> Response {
    let q = query(&uri);
    guarded(s, headers, "Fraud signals", "/fraud", move |st| {
        pages::fraud(&st.store, &q, now_ms()).map(Some)
    })
    .await
}

async fn page_flows(State(s): State<ConsoleState>, headers: HeaderMap) -> Response {
    guarded(s, headers, "Flows", "/flows", move |st| {
        Ok(Some(pages::flows(&(st.flows)())))
    })
    .await
}

async fn page_active(State(s): State<ConsoleState>, headers: HeaderMap) -> Response {
    let mut r = guarded(s, headers, "Calls in progress", "/active", move |st| {
        let snap = st.active.as_ref().map(|a| a.snapshot());
        Ok(Some(pages::active(snap.as_deref(), now_ms())))
    })
    .await;
    r.headers_mut()
        .insert(header::REFRESH, HeaderValue::from_static("5"));
    r
}
