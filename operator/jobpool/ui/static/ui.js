// Live figures from the server's one shared stream (Server-Sent Events); the pages work without it.
"use strict";
(function () {
  function points(values, width, height) {
    if (!values.length) return "";
    var top = Math.max.apply(null, values) || 1;
    var step = width / Math.max(1, values.length - 1);
    return values.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (height - (v / top) * (height - 2) - 1).toFixed(1);
    }).join(" ");
  }
  function ago(seconds) {
    if (!seconds) return "—";
    var s = Math.max(0, Date.now() / 1000 - seconds);
    return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s ago";
  }
  function show(pool, view) {
    document.querySelectorAll("[data-pool]").forEach(function (box) {
      if (box.dataset.pool !== pool) return;
      box.querySelectorAll("[data-field]").forEach(function (cell) {
        var key = cell.dataset.field, value = view[key];
        if (key === "saturation" && typeof value === "number") value = value.toFixed(2);
        if (key === "error") value = value || "";
        if (value !== undefined && value !== null) cell.textContent = String(value);
      });
      box.querySelectorAll("polyline[data-series]").forEach(function (line) {
        line.setAttribute("points", points((view.history || {})[line.dataset.series] || [], 120, 24));
      });
    });
    document.querySelectorAll("tbody[data-workers]").forEach(function (body) {
      if (body.dataset.workers !== pool) return;
      body.textContent = "";
      (view.workerList || []).forEach(function (w) {
        var row = body.insertRow();
        row.insertCell().textContent = w.id;   // textContent: a worker's name is never markup
        var busy = row.insertCell(); busy.className = "num"; busy.textContent = w.busy + " / " + w.slots;
        row.insertCell().textContent = ago(w.lastSeen);
      });
    });
  }
  function receive(text) {
    var data = JSON.parse(text);
    Object.keys(data.pools).forEach(function (pool) { show(pool, data.pools[pool]); });
    document.body.dataset.updated = String(Date.now());
    document.body.dataset.streams = String(data.streams);
  }
  function connect() {
    var live = document.getElementById("live");
    if (!document.querySelector("[data-pool]")) return;
    function state(on) { if (live) live.className = on ? "live on" : "live off"; }
    var stream = document.body.dataset.root + "events";
    if (window.SharedWorker) {   // one stream shared by every tab of this UI
      var worker = new SharedWorker(document.body.dataset.root + "static/live-worker.js", "jobpool-live");
      worker.port.onmessage = function (message) {
        if (message.data.state) state(message.data.state === "on");
        if (message.data.data) receive(message.data.data);
      };
      worker.port.start();
      window.addEventListener("pagehide", function () { worker.port.postMessage("bye"); });
    } else if (window.EventSource) {
      var source = new EventSource(stream);
      source.onopen = function () { state(true); };
      source.onerror = function () { state(false); };
      source.onmessage = function (message) { receive(message.data); };
    }
  }
  function confirmPurges() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { connect(); confirmPurges(); });
})();
