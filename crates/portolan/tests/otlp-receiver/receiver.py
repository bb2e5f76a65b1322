"""An OTLP/HTTP trace receiver for the tests: each export is parsed with OpenTelemetry's own
protobuf definitions (opentelemetry-proto), strictly, after OTLP/JSON's one rule that differs
from protobuf's JSON mapping (trace and span ids in hex). Spans go to a JSON-lines file; so do
the headers of webhook deliveries sent to /hook. Prints its port, then serves until killed.

usage: receiver.py SPANS_FILE HOOKS_FILE
"""

import base64
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SPANS, HOOKS = sys.argv[1], sys.argv[2]
IDS = ("traceId", "spanId", "parentSpanId")


def hex_ids_to_base64(value):
    if isinstance(value, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in IDS else hex_ids_to_base64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hex_ids_to_base64(v) for v in value]
    return value


def attribute(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/hook":
            with open(HOOKS, "a") as out:
                out.write(json.dumps({k.lower(): v for k, v in self.headers.items()}) + "\n")
            return self.answer(200, {"ok": True})
        if self.path != "/v1/traces" or self.headers.get("content-type") != "application/json":
            return self.answer(404, {"error": f"{self.path} with {self.headers.get('content-type')}"})
        request = ExportTraceServiceRequest()
        try:
            json_format.Parse(json.dumps(hex_ids_to_base64(json.loads(body))), request)
        except (ValueError, json_format.ParseError) as error:
            with open(SPANS, "a") as out:
                out.write(json.dumps({"invalid": str(error)}) + "\n")
            return self.answer(400, {"error": str(error)})
        with open(SPANS, "a") as out:
            for resource in request.resource_spans:
                service = {a.key: attribute(a.value) for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        out.write(json.dumps({
                            "service": service.get("service.name"),
                            "traceId": span.trace_id.hex(),
                            "spanId": span.span_id.hex(),
                            "parentSpanId": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": span.kind,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "status": span.status.code,
                            "attributes": {a.key: attribute(a.value) for a in span.attributes},
                        }) + "\n")
        self.answer(200, {})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
