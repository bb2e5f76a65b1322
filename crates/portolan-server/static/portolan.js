// Portolan's one script. Every page works without it; with it, a run page follows its log live
// (server-sent events), timers count down, and action forms show only the inputs that apply.
(function () {
  "use strict";

  // ---- a run's live log ----
  var log = document.getElementById("live-log");
  if (log && window.EventSource) {
    var run = log.getAttribute("data-run");
    var after = log.getAttribute("data-after") || "0";
    var source = new EventSource("/api/v1/actions/runs/" + encodeURIComponent(run) + "/logs/stream?after=" + encodeURIComponent(after));
    source.addEventListener("log", function (event) {
      var line = JSON.parse(event.data);
      log.appendChild(document.createTextNode(line.at + " [" + line.stream + "] " + line.message + "\n"));
    });
    source.addEventListener("end", function () {
      source.close();
      window.location.reload();
    });
    source.onerror = function () { source.close(); };
  }

  // ---- timers as countdowns ----
  function plural(n, unit) { return n + " " + unit + (n === 1 ? "" : "s"); }
  function words(until) {
    var left = until - Date.now();
    var past = left < 0;
    var minutes = Math.floor(Math.abs(left) / 60000);
    var days = Math.floor(minutes / 1440), hours = Math.floor(minutes / 60) % 24;
    var span = days > 0 ? plural(days, "day") + " " + plural(hours, "hour")
      : hours > 0 ? plural(hours, "hour") + " " + plural(minutes % 60, "minute")
      : plural(Math.max(minutes, 1), "minute");
    return past ? "ended " + span + " ago" : "ends in " + span;
  }
  var timers = document.querySelectorAll("time.countdown");
  function tick() {
    for (var i = 0; i < timers.length; i++) {
      var until = Date.parse(timers[i].getAttribute("datetime"));
      if (!isNaN(until)) { timers[i].textContent = words(until); }
    }
  }
  if (timers.length) { tick(); window.setInterval(tick, 30000); }

  // ---- action forms: an input waits for the inputs it depends on; `visible` rules hide it ----
  var form = document.getElementById("action-form");
  if (form) {
    var fields = form.querySelectorAll("[data-input]");
    var stateUrl = form.getAttribute("data-state");
    var filled = function (name) {
      var input = form.elements["in." + name];
      if (!input) { return false; }
      return input.type === "checkbox" ? input.checked : input.value.trim() !== "";
    };
    var refresh = function (visible) {
      for (var i = 0; i < fields.length; i++) {
        var field = fields[i];
        var name = field.getAttribute("data-input");
        var needs = (field.getAttribute("data-depends-on") || "").split(" ").filter(Boolean);
        var waiting = needs.filter(function (n) { return !filled(n); });
        var controls = field.querySelectorAll("input, select, textarea");
        for (var j = 0; j < controls.length; j++) { controls[j].disabled = waiting.length > 0; }
        var hint = field.querySelector(".waiting");
        if (hint) { hint.hidden = waiting.length === 0; }
        if (visible && Object.prototype.hasOwnProperty.call(visible, name)) { field.hidden = !visible[name]; }
      }
    };
    var pending = null;
    var ask = function () {
      if (!stateUrl || !window.fetch) { refresh(null); return; }
      var body = new URLSearchParams(new FormData(form));
      fetch(stateUrl, { method: "POST", body: body, credentials: "same-origin" })
        .then(function (response) { return response.ok && !response.redirected ? response.json() : null; })
        .then(function (state) { refresh(state && state.visible); })
        .catch(function () { refresh(null); });
    };
    form.addEventListener("input", function () {
      refresh(null);
      if (pending) { window.clearTimeout(pending); }
      pending = window.setTimeout(ask, 250);
    });
    ask();
  }
})();

// ---- a catalog table's facet counts, fetched after the table is shown ----
(function () {
  "use strict";
  var facets = document.getElementById("facets");
  var source = facets && facets.getAttribute("data-src");
  if (!source || !window.fetch) { return; }
  fetch(source, { credentials: "same-origin" })
    .then(function (response) { return response.ok && !response.redirected ? response.text() : null; })
    .then(function (html) { if (html !== null) { facets.innerHTML = html; } });
})();
