//! HTTP serving: the router, the per-request fault/statistics layer, and an accept loop that can drop a
//! single connection without answering (the "dropped connection" fault).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::state::AppState;

/// Request extension: closes the request's connection when notified.
#[derive(Clone)]
struct ConnKill(Arc<Notify>);

/// The full router: REST API, control API, BigQuery-style 404 fallback, fault layer.
pub fn router(st: Arc<AppState>) -> Router {
    Router::new()
        .nest("/bigquery/v2", crate::api::routes())
        .nest("/_emulator", crate::control::routes())
        .fallback(crate::api::fallback)
        .layer(middleware::from_fn_with_state(Arc::clone(&st), fault_layer))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(st)
}

async fn fault_layer(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(method) = crate::api::classify(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let (authorization, user_project) = {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (header("authorization"), header("x-goog-user-project"))
    };
    st.count_request(method, &authorization, &user_project);
    // BigQuery deletes a table once its expirationTime has passed.
    if crate::util::lock(&st.catalog).drop_expired(crate::util::now_millis()) > 0 {
        st.mark_dirty();
    }
    let fault = st.faults.on_request(method);
    if let Some(d) = fault.delay {
        tokio::time::sleep(d).await;
    }
    let kill = req.extensions().get::<ConnKill>().cloned();
    if fault.drop {
        return drop_connection(kill).await;
    }
    if let Some(err) = fault.fail {
        return err.into_response();
    }
    let response = next.run(req).await;
    if let Some(d) = fault.delay_after {
        tokio::time::sleep(d).await;
    }
    if fault.drop_after {
        return drop_connection(kill).await;
    }
    response
}

async fn drop_connection(kill: Option<ConnKill>) -> Response {
    if let Some(kill) = kill {
        kill.0.notify_one();
        // The connection task drops this future together with the socket.
        std::future::pending::<()>().await;
    }
    ApiError::new(503, "backendError", "injected fault: connection dropped").into_response()
}

/// Serves `router` on `listener` until `shutdown` flips to true; then closes every connection.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let stop_rx = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let kill = Arc::new(Notify::new());
                let ext = ConnKill(Arc::clone(&kill));
                let svc = router.clone().map_request(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ext.clone());
                    req
                });
                let mut stop = stop_rx.clone();
                conns.spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                });
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}
