//! The page that says how to connect an AI assistant to the MCP server, and what it may do there.

use super::*;

struct ToolRow {
    name: String,
    title: String,
    description: String,
    read_only: bool,
}

#[derive(Template)]
#[template(path = "assistants.html")]
struct AssistantsPage {
    signed_in: Option<SignedIn>,
    url: String,
    config: String,
    tools: Vec<ToolRow>,
}

pub(super) async fn assistants_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let url = format!("{}/mcp", app.public_url);
    let config = serde_json::json!({"mcpServers": {"portolan": {"type": "http", "url": url,
        "headers": {"Authorization": "Bearer plt_..."}}}});
    let text = |tool: &Value, key: &str| tool[key].as_str().unwrap_or_default().to_string();
    let tools = crate::mcp::tools()
        .iter()
        .map(|t| ToolRow {
            name: text(t, "name"),
            title: text(t, "title"),
            description: text(t, "description"),
            read_only: t["annotations"]["readOnlyHint"] == true,
        })
        .collect();
    Ok(render(&AssistantsPage {
        signed_in: layout_user(&app, &signed_in).await,
        config: serde_json::to_string_pretty(&config).unwrap_or_default(),
        url,
        tools,
    }))
}
