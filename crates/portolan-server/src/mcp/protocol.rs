//! The protocol's messages, with no IO: JSON-RPC 2.0 framing, the `initialize` handshake and
//! version negotiation, pages of tools, tool results, and the `Origin` check.

use axum::http::HeaderMap;
use serde_json::{Value, json};

/// The protocol versions served, newest first: those whose clients open with `initialize`.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Tools per page of `tools/list`.
pub const TOOLS_PER_PAGE: usize = 50;

/// The biggest message taken, in bytes: a tool's arguments are a query or a form.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

pub struct Request {
    pub id: Value,
    pub method: String,
    pub params: Value,
}

pub enum Incoming {
    Request(Request),
    /// `notifications/cancelled` stops a request's wait; others (`notifications/initialized`) are
    /// acknowledged and otherwise ignored.
    Notification {
        method: String,
        params: Value,
    },
    /// A client's answer to a server request; this server sends none.
    Response,
}

/// A JSON-RPC error.
#[derive(Debug, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }

    pub fn response(&self, id: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": self.code, "message": self.message}})
    }
}

/// One message of a POST body. Batches (JSON arrays) are refused, as the protocol no longer has them.
pub fn parse(body: &[u8]) -> Result<Incoming, RpcError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(RpcError::new(-32600, format!("a message is at most {MAX_MESSAGE_BYTES} bytes")));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RpcError::new(-32700, format!("the body is not JSON: {e}")))?;
    let Value::Object(message) = value else {
        return Err(RpcError::new(-32600, "send one JSON-RPC message as a JSON object (batches are not taken)"));
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(-32600, "'jsonrpc' must be \"2.0\""));
    }
    let Some(method) = message.get("method") else {
        return match message.contains_key("result") || message.contains_key("error") {
            true => Ok(Incoming::Response),
            false => Err(RpcError::new(-32600, "a message needs a 'method'")),
        };
    };
    let Some(method) = method.as_str() else { return Err(RpcError::new(-32600, "'method' must be a string")) };
    let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
    if !params.is_object() {
        return Err(RpcError::new(-32602, "'params' must be an object"));
    }
    match message.get("id") {
        None => Ok(Incoming::Notification { method: method.to_string(), params }),
        Some(id @ (Value::String(_) | Value::Number(_))) => {
            Ok(Incoming::Request(Request { id: id.clone(), method: method.to_string(), params }))
        }
        Some(_) => Err(RpcError::new(-32600, "'id' must be a string or a number")),
    }
}

/// The answer to `initialize`: the client's version when it is one served, else the newest.
pub fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
    let version = SUPPORTED_VERSIONS.iter().find(|v| **v == asked).unwrap_or(&SUPPORTED_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "portolan", "title": "Portolan", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Portolan is an internal developer portal. Start with describe_data_model to learn the \
            blueprints (kinds of entity), then search_entities or get_entity. Actions run as the signed-in user, \
            under the portal's permissions, approvals, quotas and limits: dry_run_action first, then run_action; \
            a run that needs approval waits for a person to approve it in the portal.",
    })
}

/// A page of `tools/list`, from the `cursor` of the page before (the index it starts at).
pub fn page_of_tools(tools: &[Value], params: &Value) -> Result<Value, RpcError> {
    let start = match params.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(Value::String(cursor)) => cursor
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= tools.len())
            .ok_or_else(|| RpcError::invalid_params("the cursor is not one this server gave out"))?,
        Some(_) => return Err(RpcError::invalid_params("the cursor is not one this server gave out")),
    };
    let end = (start + TOOLS_PER_PAGE).min(tools.len());
    let mut page = json!({"tools": tools[start..end]});
    if end < tools.len() {
        page["nextCursor"] = Value::from(end.to_string());
    }
    Ok(page)
}

/// A progress notification of the request that gave `token`.
pub fn progress(token: &Value, step: u64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/progress",
           "params": {"progressToken": token, "progress": step, "message": message}})
}

/// Whether a POST's `Accept` takes an event stream as its answer.
pub fn accepts_stream(headers: &HeaderMap) -> bool {
    headers.get_all("accept").iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/event-stream"))
}

/// A tool's result: the value as structured content and as its JSON text.
pub fn tool_result(value: Value, is_error: bool) -> Value {
    let text = serde_json::to_string(&value).unwrap_or_default();
    json!({"content": [{"type": "text", "text": text}], "structuredContent": value, "isError": is_error})
}

/// Refuses a request a web page of another origin makes (DNS rebinding, or a page the user has
/// open posting to the portal): an `Origin`, when sent, must be the portal's own.
pub fn check_origin(headers: &HeaderMap, public_url: &str) -> Result<(), String> {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let own = [public_url.trim_end_matches('/').to_string(), format!("http://{host}"), format!("https://{host}")];
    match own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
        true => Ok(()),
        false => Err(format!("requests from origin '{origin}' are not taken")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_requests_notifications_or_refused_with_their_code() {
        let request = parse(br#"{"jsonrpc": "2.0", "id": 7, "method": "ping"}"#);
        assert!(matches!(request, Ok(Incoming::Request(Request { ref method, .. })) if method == "ping"));
        let notification = parse(br#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#);
        assert!(
            matches!(notification, Ok(Incoming::Notification { ref method, .. }) if method == "notifications/initialized")
        );
        assert!(matches!(parse(br#"{"jsonrpc": "2.0", "id": 1, "result": {}}"#), Ok(Incoming::Response)));
        let code = |body: &[u8]| parse(body).err().map(|e| e.code);
        assert_eq!(code(b"{not json"), Some(-32700));
        assert_eq!(code(br#"[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]"#), Some(-32600));
        assert_eq!(code(br#"{"jsonrpc": "1.0", "id": 1, "method": "ping"}"#), Some(-32600));
        assert_eq!(code(br#"{"jsonrpc": "2.0", "id": null, "method": "ping"}"#), Some(-32600));
        assert_eq!(code(br#"{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}"#), Some(-32602));
    }

    #[test]
    fn the_handshake_keeps_a_served_version_and_offers_the_newest_otherwise() {
        assert_eq!(initialize(&json!({"protocolVersion": "2025-06-18"}))["protocolVersion"], "2025-06-18");
        assert_eq!(initialize(&json!({"protocolVersion": "1999-01-01"}))["protocolVersion"], SUPPORTED_VERSIONS[0]);
        assert_eq!(initialize(&json!({}))["capabilities"]["tools"]["listChanged"], false);
    }

    #[test]
    fn tools_come_in_pages_that_follow_their_cursor() {
        let tools: Vec<Value> = (0..TOOLS_PER_PAGE + 3).map(|i| json!({"name": format!("t{i}")})).collect();
        let first = page_of_tools(&tools, &json!({})).expect("first page");
        assert_eq!(first["tools"].as_array().map(Vec::len), Some(TOOLS_PER_PAGE));
        let next = first["nextCursor"].clone();
        let second = page_of_tools(&tools, &json!({"cursor": next})).expect("second page");
        assert_eq!(second["tools"].as_array().map(Vec::len), Some(3));
        assert!(second.get("nextCursor").is_none());
        assert_eq!(page_of_tools(&tools, &json!({"cursor": "999"})).err().map(|e| e.code), Some(-32602));
    }

    #[test]
    fn only_the_portals_own_origin_may_post() {
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert("host", "127.0.0.1:7700".parse().expect("host"));
            if let Some(o) = origin {
                h.insert("origin", o.parse().expect("origin"));
            }
            h
        };
        let public = "https://portal.example.com/";
        assert!(check_origin(&headers(None), public).is_ok());
        assert!(check_origin(&headers(Some("https://portal.example.com")), public).is_ok());
        assert!(check_origin(&headers(Some("http://127.0.0.1:7700")), public).is_ok());
        assert!(check_origin(&headers(Some("https://evil.example")), public).is_err());
    }
}
