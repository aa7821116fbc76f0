// Test OTLP/HTTP receiver. Decodes ExportTraceServiceRequest and
// ExportMetricsServiceRequest bodies with the decoder generated from the
// official OpenTelemetry protos (shipped by @opentelemetry/otlp-transformer@0.52.1
// in build/src/generated/root.js) and appends one JSON line per received span
// to OUT_FILE, one per metric data point to the metrics file (OUT_FILE.metrics
// unless --metrics-out).
//
// usage: node receiver.js PORT OUT_FILE [--status CODE] [--delay-ms N]
//            [--fail-first N] [--retry-after S] [--metrics-out FILE]
// --status CODE answers every request with CODE; with --fail-first N only the
// first N requests (later ones are decoded and answered 200). --retry-after S
// adds "Retry-After: S" to those answers.
// GET /stats answers {"requests":n,"spans":n,"bad":n,"metric_requests":n,
// "points":n,"metric_bad":n,"metric_log":[{"t_ms":…,"status":…},…]}
// (requests counts /v1/traces and other paths, metric_requests /v1/metrics).
// POST /v1/logs bodies (ExportLogsServiceRequest) go one JSON line per log
// record to OUT_FILE.logs (or --logs-out FILE); "logs" in /stats counts them.
// SIGTERM exits.
'use strict';
const http = require('http');
const fs = require('fs');
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root');

const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const MReq = root.opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest;
const LogsReq = root.opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest;
const [port, out] = [Number(process.argv[2]), process.argv[3]];
const optStr = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
};
const opt = (name, def) => Number(optStr(name, def));
const status = opt('--status', 200);
const delay = opt('--delay-ms', 0);
const failFirst = opt('--fail-first', -1);   // -1: --status applies to every request
const retryAfter = optStr('--retry-after', null);
const metricsOut = optStr('--metrics-out', out + '.metrics');
let requests = 0, spans = 0, bad = 0, posts = 0;
let metricRequests = 0, points = 0, metricBad = 0;
const metricLog = [];
const logsOut = process.argv.indexOf('--logs-out') > 0
  ? process.argv[process.argv.indexOf('--logs-out') + 1] : `${out}.logs`;
let logs = 0;

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
// fixed64/sfixed64 decode as Long objects: exact as long as they fit in 2^53
const num = (x) => (x === undefined || x === null ? null : Number(String(x)));
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

// One JSON object per data point of an ExportMetricsServiceRequest.
const metricLines = (msg, seq) => {
  const lines = [];
  for (const rm of msg.resourceMetrics || []) {
    const resource = attrs(rm.resource && rm.resource.attributes);
    for (const sm of rm.scopeMetrics || []) {
      const scope = sm.scope ? { name: sm.scope.name, version: sm.scope.version } : null;
      for (const m of sm.metrics || []) {
        const base = { export: seq, resource, scope, name: m.name, unit: m.unit,
                       description: m.description };
        if (m.histogram) {
          for (const p of m.histogram.dataPoints || []) {
            lines.push({ ...base, type: 'histogram', temporality: m.histogram.aggregationTemporality,
              attributes: attrs(p.attributes), start: String(p.startTimeUnixNano),
              time: String(p.timeUnixNano), count: num(p.count),
              sum: has(p, 'sum') ? p.sum : null,
              bucketCounts: (p.bucketCounts || []).map(num),
              explicitBounds: p.explicitBounds || [] });
          }
        } else if (m.sum || m.gauge) {
          const d = m.sum || m.gauge;
          for (const p of d.dataPoints || []) {
            lines.push({ ...base, type: m.sum ? 'sum' : 'gauge',
              temporality: m.sum ? m.sum.aggregationTemporality : null,
              monotonic: m.sum ? !!m.sum.isMonotonic : null,
              attributes: attrs(p.attributes), start: String(p.startTimeUnixNano),
              time: String(p.timeUnixNano),
              value: has(p, 'asInt') ? num(p.asInt) : has(p, 'asDouble') ? p.asDouble : null });
          }
        } else {
          lines.push({ ...base, type: 'other' });
        }
      }
    }
  }
  return lines;
};

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
    res.end(JSON.stringify({ requests, spans, bad, metric_requests: metricRequests, points, logs,
                             metric_bad: metricBad, metric_log: metricLog }));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const isMetrics = req.url === '/v1/metrics';
    const code = failFirst < 0 || posts < failFirst ? status : 200;
    posts++;
    if (isMetrics) {
      metricRequests++;
      metricLog.push({ t_ms: Date.now(), status: code });
    } else {
      requests++;
    }
    const answer = () => {
      if (code !== 200) {
        res.statusCode = code;
        if (retryAfter !== null) res.setHeader('Retry-After', retryAfter);
        res.end();
        return;
      }
      if (isMetrics) {
        answerMetrics();
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
    const answerMetrics = () => {
      let msg;
      try {
        if (req.headers['content-type'] !== 'application/x-protobuf')
          throw new Error(`unexpected ${req.url} ${req.headers['content-type']}`);
        msg = MReq.decode(Buffer.concat(chunks));
      } catch (e) {
        metricBad++;
        process.stderr.write(`receiver: ${e}\n`);
        res.statusCode = 400;
        res.end();
        return;
      }
      const lines = metricLines(msg, metricRequests).map((l) => {
        l.headers = { authorization: req.headers['authorization'] || null };
        return JSON.stringify(l);
      });
      points += lines.length;
      if (lines.length) fs.appendFileSync(metricsOut, lines.join('\n') + '\n');
      res.setHeader('Content-Type', 'application/x-protobuf');
      res.end();
    };
    if (delay) setTimeout(answer, delay); else answer();
  });
}).listen(port, '127.0.0.1', () => process.stderr.write(`receiver: listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
