// The hornbeam dashboard: polls /metrics.json every second, keeps the last
// five minutes in memory and draws them on canvases. No build step, no
// dependencies: everything here is served by the node's metrics port.
(function () {
  "use strict";

  var POLL_MS = 1000;
  var KEEP = 300;            // samples kept: five minutes at one per second
  var LATENCY_WINDOW = 10;   // seconds of histogram deltas behind the p99 tile

  var samples = [];          // {t, connections, inRate, outRate, p50, p99, inFlight, notReady}
  var previous = null;       // the last JSON document, for rates and histogram deltas
  var histories = [];        // per-second histogram deltas (arrays of bucket counts)

  function $(id) { return document.getElementById(id); }

  // The q-quantile of per-bucket counts: the bound (µs) of the bucket
  // holding it; null when empty; the last bound when it is past them.
  function quantile(q, bounds, counts) {
    var total = counts.reduce(function (a, b) { return a + b; }, 0);
    if (total === 0) return null;
    var rank = Math.max(1, Math.ceil(q * total)), seen = 0;
    for (var i = 0; i < counts.length; i++) {
      seen += counts[i];
      if (seen >= rank) return i < bounds.length ? bounds[i] : bounds[bounds.length - 1];
    }
    return null;
  }

  function sumArrays(arrays) {
    if (arrays.length === 0) return [];
    var out = arrays[0].map(function () { return 0; });
    arrays.forEach(function (a) { a.forEach(function (v, i) { out[i] += v; }); });
    return out;
  }

  function ingest(doc) {
    var lat = doc.python_latency;
    var sample = { t: doc.time_ms, connections: doc.connections, inRate: 0, outRate: 0,
                   p50: null, p99: null, inFlight: 0, notReady: 0 };
    doc.python_workers.forEach(function (w) {
      sample.inFlight += w.in_flight || 0;
      if (w.status !== "ready") sample.notReady += 1;
    });
    if (previous) {
      var dt = Math.max(0.001, (doc.time_ms - previous.time_ms) / 1000);
      sample.inRate = Math.max(0, (doc.counters.messages_in - previous.counters.messages_in) / dt);
      sample.outRate = Math.max(0, (doc.counters.messages_out - previous.counters.messages_out) / dt);
      var delta = lat.counts.map(function (c, i) { return Math.max(0, c - previous.python_latency.counts[i]); });
      histories.push(delta);
      if (histories.length > LATENCY_WINDOW) histories.shift();
      var p50 = quantile(0.5, lat.bounds_us, delta), p99 = quantile(0.99, lat.bounds_us, delta);
      sample.p50 = p50 === null ? null : p50 / 1000;
      sample.p99 = p99 === null ? null : p99 / 1000;
    }
    previous = doc;
    samples.push(sample);
    if (samples.length > KEEP) samples.shift();
    render(doc, sample);
  }

  function total(map) {
    return Object.keys(map).reduce(function (a, k) { return a + map[k]; }, 0);
  }

  function fmt(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 100) return String(Math.round(n));
    return String(Math.round(n * 10) / 10);
  }

  function render(doc, sample) {
    $("node").textContent = doc.node;
    $("connections").textContent = doc.connections;
    $("channels").textContent = total(doc.channels_joined);
    $("msgs").textContent = fmt(sample.inRate + sample.outRate);
    var p99 = quantile(0.99, doc.python_latency.bounds_us, sumArrays(histories));
    $("p99").textContent = p99 === null ? "–" : fmt(p99 / 1000) + " ms";
    $("presences").textContent = doc.presence_entries;
    $("nodes").textContent = doc.cluster_nodes;
    $("status").textContent = "updated " + new Date(doc.time_ms).toLocaleTimeString() +
      (doc.enabled ? "" : " (counting is off: start with metrics_bind)");
    $("status").className = "";

    var rows = doc.python_workers.map(function (w) {
      return [w.ix === undefined ? "?" : w.ix, w.status, w.in_flight, w.queued, w.restarts];
    });
    fillTable("workers", rows, function (row, tr) {
      if (row[1] !== "ready") tr.children[1].className = "bad";
    });
    fillTable("topics", doc.topics.map(function (t) { return [t.topic, t.subscribers, t.presences]; }));

    draw("chart-connections", [samples.map(function (s) { return s.connections; })]);
    draw("chart-messages", [samples.map(function (s) { return s.inRate; }),
                            samples.map(function (s) { return s.outRate; })]);
    draw("chart-latency", [samples.map(function (s) { return s.p50; }),
                           samples.map(function (s) { return s.p99; })]);
    draw("chart-workers", [samples.map(function (s) { return s.inFlight; }),
                           samples.map(function (s) { return s.notReady; })]);
  }

  function fillTable(id, rows, decorate) {
    var body = $(id).tBodies[0];
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (cell) {
        var td = document.createElement("td");
        td.textContent = cell === undefined || cell === null ? "" : String(cell);
        tr.appendChild(td);
      });
      if (decorate) decorate(row, tr);
      body.appendChild(tr);
    });
  }

  var COLORS = ["#1f77b4", "#ff7f0e"];

  // Lines over the last KEEP samples, y from 0 to the largest value seen;
  // null values (no calls that second) leave a gap.
  function draw(id, series) {
    var canvas = $(id);
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var max = 0;
    series.forEach(function (s) { s.forEach(function (v) { if (v !== null && v > max) max = v; }); });
    max = max > 0 ? max * 1.1 : 1;
    var left = 40, bottom = h - 16, top = 6, right = w - 6;
    ctx.strokeStyle = "#ddd"; ctx.fillStyle = "#666"; ctx.font = "11px sans-serif";
    ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, bottom); ctx.lineTo(right, bottom); ctx.stroke();
    ctx.fillText(fmt(max), 2, top + 10);
    ctx.fillText("0", 2, bottom);
    ctx.fillText("-" + Math.round(KEEP / 60) + " min", left, h - 2);
    ctx.fillText("now", right - 22, h - 2);
    series.forEach(function (s, k) {
      ctx.strokeStyle = COLORS[k % COLORS.length];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      var pen = false;
      s.forEach(function (v, i) {
        var x = right - (s.length - 1 - i) * (right - left) / (KEEP - 1);
        if (v === null) { pen = false; return; }
        var y = bottom - (v / max) * (bottom - top);
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        pen = true;
      });
      ctx.stroke();
      // a dot per sample too, so a lone value between gaps is seen
      ctx.fillStyle = COLORS[k % COLORS.length];
      s.forEach(function (v, i) {
        if (v === null) return;
        var x = right - (s.length - 1 - i) * (right - left) / (KEEP - 1);
        ctx.fillRect(x - 1, bottom - (v / max) * (bottom - top) - 1, 2, 2);
      });
    });
  }

  function poll() {
    fetch("/metrics.json", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(ingest)
      .catch(function (e) {
        $("status").textContent = "cannot read /metrics.json: " + e.message;
        $("status").className = "stale";
      })
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  window.hornbeamDashboard = { quantile: quantile, samples: samples };
  poll();
})();
