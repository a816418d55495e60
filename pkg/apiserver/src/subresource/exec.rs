//! `pods/<name>/exec`: a command in a running container (`kubectl exec`), relayed to the
//! kubelet of the pod's node, as the Kubernetes apiserver does.
//!
//! kubectl (1.30 and later) opens a WebSocket with the subprotocol `v5.channel.k8s.io` on
//! `GET /api/v1/namespaces/<ns>/pods/<name>/exec?command=…&container=…&stdin&stdout&stderr`.
//! The apiserver checks the pod and the container (a `Status` with the right code when it
//! cannot: 404, 400), accepts the WebSocket, opens one of its own to the kubelet's
//! `/exec/<ns>/<pod>/<container>` with the same query (address from the Node's status, as for
//! logs) and relays every message both ways until either side closes. The channels and the
//! final status are the kubelet's (see `rkube_kubelet::exec`). A request that is not a
//! WebSocket upgrade (the SPDY fallback of older clients) is refused with a 400 `Status`.
//!
//! `pods/<name>/attach` (`kubectl attach`, `kubectl run -i`) is the same relay to the kubelet's
//! `/attach/<ns>/<pod>/<container>`, without a command: the client joins the container's own
//! process.
//!
//! `pods/<name>/portforward` (`kubectl port-forward`) relays a WebSocket with the subprotocol
//! `SPDY/3.1+portforward.k8s.io` (SPDY/3.1 tunnelled in WebSocket messages, what kubectl 1.31+
//! speaks) or `v4.channel.k8s.io` (the Python client, ports in the query) to the kubelet's
//! `/portForward/<ns>/<pod>`, which speaks both (see `rkube_kubelet::portforward`); the
//! apiserver only moves the bytes. (The Kubernetes apiserver
//! unwraps the tunnel and speaks plain SPDY to its kubelets; rkube's kubelet takes the tunnel
//! as it is.) Here the kubelet is reached before the client's upgrade is accepted, so a kubelet
//! that refuses is an HTTP error with its words, which kubectl prints.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rkube_api::remotecommand::PROTOCOL;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::ApiState;
use crate::error::ApiError;
use crate::request::{Query, ResourceRequest};
use crate::rest;

/// The port-forwarding protocols relayed: SPDY/3.1 tunnelled in WebSocket messages (kubectl),
/// and the older channel protocol (the Python client).
const PORT_FORWARD: [&str; 2] = ["SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io"];

/// A WebSocket to a kubelet.
type KubeletSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Which streaming subresource a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Exec,
    Attach,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Exec => "exec",
            Stream::Attach => "attach",
        }
    }
}

/// GET (or POST) `/api/v1/namespaces/{namespace}/pods/{name}/exec`.
pub async fn handle(
    state: State<Arc<ApiState>>,
    path: Path<(String, String)>,
    raw: RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    stream(Stream::Exec, state, path, raw, upgrade).await
}

/// GET (or POST) `/api/v1/namespaces/{namespace}/pods/{name}/attach`.
pub async fn attach(
    state: State<Arc<ApiState>>,
    path: Path<(String, String)>,
    raw: RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    stream(Stream::Attach, state, path, raw, upgrade).await
}

async fn stream(
    kind: Stream,
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match prepare(&state, kind, &namespace, &name, raw.as_deref().unwrap_or_default()).await {
        Err(error) => error.into_response(),
        Ok(url) => match upgrade {
            Err(_) => ApiError::BadRequest(format!(
                "{} needs a WebSocket upgrade with the subprotocol {PROTOCOL} (SPDY is not supported)",
                kind.name()
            ))
            .into_response(),
            Ok(upgrade) => {
                let tls = state.config.kubelet_tls.clone();
                upgrade.protocols([PROTOCOL]).on_upgrade(move |client| relay(client, url, tls))
            }
        },
    }
}

/// GET (or POST) `/api/v1/namespaces/{namespace}/pods/{name}/portforward`.
pub async fn port_forward(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let url = match port_forward_url(&state, &namespace, &name, raw.as_deref().unwrap_or_default()).await {
        Ok(url) => url,
        Err(error) => return error.into_response(),
    };
    let protocols = PORT_FORWARD.join(", ");
    let Ok(upgrade) = upgrade else {
        let message = format!(
            "portforward needs a WebSocket upgrade with a subprotocol of {protocols} (plain SPDY is not supported)"
        );
        return ApiError::BadRequest(message).into_response();
    };
    let upgrade = upgrade.protocols(PORT_FORWARD);
    let selected = upgrade.selected_protocol().and_then(|selected| selected.to_str().ok());
    let Some(protocol) = PORT_FORWARD.into_iter().find(|protocol| selected == Some(*protocol)) else {
        return ApiError::BadRequest(format!("portforward speaks only the subprotocols {protocols}")).into_response();
    };
    match connect(&url, protocol, state.config.kubelet_tls.clone()).await {
        Ok(kubelet) => upgrade.on_upgrade(move |client| pump(client, kubelet)),
        Err((message, code)) => match code.as_u16() {
            400 => ApiError::BadRequest(message),
            403 => ApiError::Forbidden(message),
            _ => ApiError::Unavailable(message),
        }
        .into_response(),
    }
}

/// Checks the pod and the `ports` asked for (if any) and returns the kubelet's port-forward URL.
async fn port_forward_url(state: &ApiState, namespace: &str, name: &str, raw: &str) -> Result<String, ApiError> {
    let req = ResourceRequest {
        resource: &rkube_api::kinds::pod::RESOURCE,
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        subresource: None,
    };
    let pod = rest::get(state, &req, name).await?;
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        if key == "ports" && value.split(',').any(|port| !port.trim().parse::<u16>().is_ok_and(|port| port > 0)) {
            return Err(ApiError::BadRequest(format!("invalid port {value:?}: ports must be 1 to 65535")));
        }
    }
    let (_, base) = super::log::pod_kubelet(state, &pod, name).await?;
    let base = base.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1);
    Ok(format!(
        "{base}/portForward/{}/{}?{raw}",
        utf8_percent_encode(namespace, NON_ALPHANUMERIC),
        utf8_percent_encode(name, NON_ALPHANUMERIC),
    ))
}

/// Checks the pod and container and returns the kubelet's exec or attach URL (`ws://…`).
async fn prepare(state: &ApiState, kind: Stream, namespace: &str, name: &str, raw: &str) -> Result<String, ApiError> {
    let pods = &rkube_api::kinds::pod::RESOURCE;
    let req = ResourceRequest {
        resource: pods,
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        subresource: None,
    };
    let pod = rest::get(state, &req, name).await?;
    let query = Query::parse(Some(raw));
    if kind == Stream::Exec && query.get("command").is_none_or(str::is_empty) {
        return Err(ApiError::BadRequest("you must specify at least one command for the container".into()));
    }
    let container = super::log::container(&pod, query.get("container"))?;
    let phase = pod.pointer("/status/phase").and_then(serde_json::Value::as_str).unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        let verb = if kind == Stream::Exec { "exec into" } else { "attach to" };
        return Err(ApiError::BadRequest(format!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        )));
    }
    let (_, base) = super::log::pod_kubelet(state, &pod, name).await?;
    let base = base.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1);
    // The kubelet reads `container` from the path; the rest of the query goes as it came.
    let rest: Vec<&str> = raw.split('&').filter(|pair| !pair.starts_with("container=") && !pair.is_empty()).collect();
    Ok(format!(
        "{base}/{}/{}/{}/{}?{}",
        kind.name(),
        utf8_percent_encode(namespace, NON_ALPHANUMERIC),
        utf8_percent_encode(name, NON_ALPHANUMERIC),
        utf8_percent_encode(&container, NON_ALPHANUMERIC),
        rest.join("&")
    ))
}

/// A status on channel 3, then close: how a session ends when the kubelet cannot be reached
/// or refuses it.
async fn fail(mut client: WebSocket, message: String, code: http::StatusCode) {
    let reason = match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    let status = serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()});
    let mut frame = vec![3u8];
    frame.extend_from_slice(status.to_string().as_bytes());
    let _ = client.send(Message::Binary(frame.into())).await;
    let _ = client.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
}

/// What the user is told when the kubelet did not take the session: the kubelet's own words
/// and status when it answered (a container that is not there is its 404, `-t` its 400),
/// else that it could not be reached (503).
fn refusal(error: &tungstenite::Error, url: &str) -> (String, http::StatusCode) {
    match error {
        tungstenite::Error::Http(response) => {
            let code = http::StatusCode::from_u16(response.status().as_u16()).unwrap_or(http::StatusCode::BAD_GATEWAY);
            let text = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().trim().to_string();
            let message = if text.is_empty() { format!("the kubelet answered {code}") } else { text };
            (message, code)
        }
        other => (format!("cannot reach the kubelet at {url}: {other}"), http::StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Opens the WebSocket to the kubelet at `url` with subprotocol `protocol`; what the user is
/// told when it cannot be opened.
async fn connect(
    url: &str,
    protocol: &'static str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<KubeletSocket, (String, http::StatusCode)> {
    let mut request = url
        .into_client_request()
        .map_err(|error| (format!("bad kubelet URL {url}: {error}"), http::StatusCode::INTERNAL_SERVER_ERROR))?;
    request.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static(protocol));
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await {
        Ok((kubelet, _)) => Ok(kubelet),
        Err(error) => Err(refusal(&error, url)),
    }
}

/// Relays an exec or attach session: the kubelet's refusal becomes a status on channel 3.
async fn relay(client: WebSocket, url: String, tls: Option<std::sync::Arc<rustls::ClientConfig>>) {
    match connect(&url, PROTOCOL, tls).await {
        Ok(kubelet) => pump(client, kubelet).await,
        Err((message, code)) => fail(client, message, code).await,
    }
}

/// Relays messages between the client's WebSocket and the kubelet's until either ends.
async fn pump(client: WebSocket, kubelet: KubeletSocket) {
    let (mut to_kubelet, mut from_kubelet) = kubelet.split();
    let (mut to_client, mut from_client) = client.split();
    let upstream = async {
        while let Some(Ok(message)) = from_client.next().await {
            let relayed = match message {
                Message::Binary(data) => tungstenite::Message::Binary(data),
                Message::Text(text) => tungstenite::Message::Text(text.as_str().into()),
                Message::Close(_) => break,
                _ => continue,
            };
            if to_kubelet.send(relayed).await.is_err() {
                break;
            }
        }
        let _ = to_kubelet.close().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = from_kubelet.next().await {
            let relayed = match message {
                tungstenite::Message::Binary(data) => Message::Binary(data),
                tungstenite::Message::Text(text) => Message::Text(text.as_str().into()),
                // The kubelet's close (1000 once the status is sent) goes to the client as it
                // is: kubectl reads a normal closure as the end of every stream.
                tungstenite::Message::Close(frame) => {
                    let frame =
                        frame.map(|frame| CloseFrame { code: frame.code.into(), reason: frame.reason.as_str().into() });
                    let _ = to_client.send(Message::Close(frame)).await;
                    return;
                }
                _ => continue,
            };
            if to_client.send(relayed).await.is_err() {
                return;
            }
        }
        let _ = to_client
            .send(Message::Close(Some(CloseFrame { code: 1011, reason: "the kubelet went away".into() })))
            .await;
    };
    // The session is over when the kubelet closes (the command ended); the client's side may
    // stay open until then.
    tokio::select! {
        () = downstream => {}
        () = async { upstream.await; std::future::pending::<()>().await } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelet_refusal_reaches_the_user_in_its_words() {
        let response = tungstenite::http::Response::builder()
            .status(404)
            .body(Some(b"container main of pod default/web is not on this node\n".to_vec()))
            .expect("response");
        let (message, code) = refusal(&tungstenite::Error::Http(Box::new(response)), "https://10.0.0.1:10250/exec");
        assert_eq!((message.as_str(), code.as_u16()), ("container main of pod default/web is not on this node", 404));
        let (message, code) = refusal(&tungstenite::Error::ConnectionClosed, "https://10.0.0.1:10250/exec");
        assert!(message.starts_with("cannot reach the kubelet at https://10.0.0.1:10250/exec"), "{message}");
        assert_eq!(code.as_u16(), 503);
    }
}
