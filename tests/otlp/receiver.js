// Test OTLP/HTTP receiver. Decodes ExportTraceServiceRequest (POST /v1/traces)
// and ExportLogsServiceRequest (POST /v1/logs) bodies with the decoder
// generated from the official OpenTelemetry protos (shipped by
// @opentelemetry/otlp-transformer@0.52.1 in build/src/generated/root.js) and
// appends one JSON line per received span to the output file, and one per
// received log record to OUT_FILE.logs (or --logs-out FILE).
//
// usage: node receiver.js PORT OUT_FILE [--status CODE] [--delay-ms N] [--logs-out FILE]
// GET /stats answers {"requests":n,"spans":n,"logs":n,"bad":n}. SIGTERM exits.
'use strict';
const http = require('http');
const fs = require('fs');
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root');

const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const LogsReq = root.opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest;
const [port, out] = [Number(process.argv[2]), process.argv[3]];
const opt = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const status = opt('--status', 200);
const delay = opt('--delay-ms', 0);
const logsOut = process.argv.indexOf('--logs-out') > 0
  ? process.argv[process.argv.indexOf('--logs-out') + 1] : `${out}.logs`;
let requests = 0, spans = 0, logs = 0, bad = 0;

const hex = (b) => Buffer.from(b || []).toString('hex');
const anyValue = (v) => {
  if (v.stringValue !== undefined && v.stringValue !== null) return v.stringValue;
  if (v.intValue !== undefined && v.intValue !== null) return Number(v.intValue);
  if (v.boolValue !== undefined && v.boolValue !== null) return v.boolValue;
  if (v.doubleValue !== undefined && v.doubleValue !== null) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values || []).map(anyValue);
  if (v.kvlistValue) return attrs(v.kvlistValue.values);
  return null;
};
const attrs = (list) => Object.fromEntries((list || []).map((kv) => [kv.key, anyValue(kv.value || {})]));

// One JSON line per log record, with its resource and scope.
const writeLogs = (msg, req) => {
  const lines = [];
  for (const rl of msg.resourceLogs || []) {
    const resource = attrs(rl.resource && rl.resource.attributes);
    for (const sl of rl.scopeLogs || []) {
      for (const r of sl.logRecords || []) {
        logs++;
        lines.push(JSON.stringify({
          resource, scope: sl.scope ? sl.scope.name : null,
          time: String(r.timeUnixNano), observedTime: String(r.observedTimeUnixNano),
          severityNumber: r.severityNumber || 0, severityText: r.severityText || '',
          body: r.body ? anyValue(r.body) : null, attributes: attrs(r.attributes),
          droppedAttributesCount: r.droppedAttributesCount || 0, flags: r.flags || 0,
          traceId: hex(r.traceId), spanId: hex(r.spanId),
          headers: { authorization: req.headers['authorization'] || null },
        }));
      }
    }
  }
  if (lines.length) fs.appendFileSync(logsOut, lines.join('\n') + '\n');
};

http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ requests, spans, logs, bad }));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    requests++;
    const answer = () => {
      if (status !== 200) {
        res.statusCode = status;
        res.end();
        return;
      }
      let msg;
      try {
        if ((req.url !== '/v1/traces' && req.url !== '/v1/logs') ||
            req.headers['content-type'] !== 'application/x-protobuf')
          throw new Error(`unexpected ${req.url} ${req.headers['content-type']}`);
        msg = (req.url === '/v1/logs' ? LogsReq : Req).decode(Buffer.concat(chunks));
      } catch (e) {
        bad++;
        process.stderr.write(`receiver: ${e}\n`);
        res.statusCode = 400;
        res.end();
        return;
      }
      if (req.url === '/v1/logs') {
        writeLogs(msg, req);
        res.setHeader('Content-Type', 'application/x-protobuf');
        res.end();
        return;
      }
      const lines = [];
      for (const rs of msg.resourceSpans || []) {
        const resource = attrs(rs.resource && rs.resource.attributes);
        for (const ss of rs.scopeSpans || []) {
          for (const s of ss.spans || []) {
            spans++;
            lines.push(JSON.stringify({
              resource, scope: ss.scope ? ss.scope.name : null,
              traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId),
              traceState: s.traceState || '', name: s.name, kind: s.kind,
              start: String(s.startTimeUnixNano), end: String(s.endTimeUnixNano),
              status: { code: (s.status && s.status.code) || 0, message: (s.status && s.status.message) || '' },
              attributes: attrs(s.attributes),
              events: (s.events || []).map((e) => ({ name: e.name, attributes: attrs(e.attributes) })),
              headers: { authorization: req.headers['authorization'] || null },
            }));
          }
        }
      }
      if (lines.length) fs.appendFileSync(out, lines.join('\n') + '\n');
      res.setHeader('Content-Type', 'application/x-protobuf');
      res.end();
    };
    if (delay) setTimeout(answer, delay); else answer();
  });
}).listen(port, '127.0.0.1', () => process.stderr.write(`receiver: listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
