-- The one resource a token is good for (an assistant's OAuth token: the MCP server); NULL for
-- tokens good for the whole API.
ALTER TABLE api_tokens ADD COLUMN audience TEXT;
