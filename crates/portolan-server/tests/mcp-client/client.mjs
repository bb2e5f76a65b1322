// Connects to Portolan's /mcp with the official SDK's Streamable HTTP client, as a member of
// team-a, and checks what an assistant would see. Prints "ok", or throws.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const check = (ok, what) => {
  if (!ok) throw new Error(what);
};

const transport = new StreamableHTTPClientTransport(new URL(process.env.PORTOLAN_MCP_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.PORTOLAN_TOKEN}` } },
});
const client = new Client({ name: 'portolan-test', version: '1.0.0' });
await client.connect(transport);
check(client.getServerVersion()?.name === 'portolan', 'the server names itself');
check(client.getServerCapabilities()?.tools, 'the server offers tools');

const { tools } = await client.listTools();
const names = tools.map((t) => t.name).sort();
check(names.includes('search_entities') && names.includes('run_action'), `tools: ${names}`);
check(tools.every((t) => t.inputSchema?.type === 'object'), 'every tool has an object input schema');

const found = await client.callTool({
  name: 'search_entities',
  arguments: { blueprint: 'service', fields: ['properties.language'] },
});
check(!found.isError, `search: ${JSON.stringify(found)}`);
const ids = found.structuredContent.entities.map((e) => e.identifier);
check(JSON.stringify(ids) === '["cart"]', `only the team's service: ${ids}`);

const hidden = await client.callTool({ name: 'get_entity', arguments: { blueprint: 'service', identifier: 'vault' } });
check(hidden.isError === true, 'another team\'s service is not found');

const started = await client.callTool({
  name: 'run_action',
  arguments: { action: 'scale', entity: 'cart', properties: { replicas: 3 } },
});
check(!started.isError, `run: ${JSON.stringify(started)}`);
check(started.structuredContent.run.status === 'WAITING_FOR_APPROVAL', 'the run waits for its approver');

const seen = [];
const promoted = await client.callTool(
  { name: 'run_action', arguments: { action: 'promote', entity: 'cart', waitSeconds: 20 } },
  undefined,
  { onprogress: (progress) => seen.push(progress) },
);
check(promoted.structuredContent.run.status === 'SUCCESS', `the run ends: ${JSON.stringify(promoted)}`);
check(seen.length > 0 && seen.every((p) => typeof p.progress === 'number'), `progress: ${JSON.stringify(seen)}`);

let unknown;
try {
  await client.callTool({ name: 'approve_run', arguments: {} });
} catch (error) {
  unknown = error;
}
check(unknown && /Unknown tool/.test(String(unknown.message)), `an unknown tool is an error: ${unknown}`);

await client.close();
console.log('ok');
