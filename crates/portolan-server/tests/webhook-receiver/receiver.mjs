// Answers 200 to a delivery whose signatures both hold — the Standard Webhooks one, checked by the
// official library, and Port's (`x-port-signature`), checked as Port's documentation describes —
// and 401 naming the one that does not. The key is WEBHOOK_KEY; the port it listens on is printed.
import crypto from "node:crypto";
import http from "node:http";
import { Webhook } from "standardwebhooks";

const key = process.env.WEBHOOK_KEY;
const TOLERANCE_SECONDS = 300;

function portSignatureHolds(headers, body) {
  const timestamp = headers["x-port-timestamp"];
  const signature = headers["x-port-signature"] ?? "";
  if (!timestamp || Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return false;
  const expected = crypto.createHmac("sha256", key).update(`${timestamp}.${body}`).digest("base64");
  const given = signature.split(",")[1] ?? "";
  return given.length === expected.length && crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected));
}

function standardSignatureHolds(headers, body) {
  try {
    new Webhook(key).verify(body, headers);
    return true;
  } catch {
    return false;
  }
}

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const verdict = {
      standard: standardSignatureHolds(request.headers, body),
      port: portSignatureHolds(request.headers, body),
    };
    response.writeHead(verdict.standard && verdict.port ? 200 : 401, { "content-type": "application/json" });
    response.end(JSON.stringify(verdict));
  });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
