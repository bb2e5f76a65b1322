// Portolan's one script. Every page works without it; with it, a run page follows its log live
// (server-sent events), timers count down, times stay relative ("3 minutes ago"), action forms
// show only the inputs that apply, and the search box suggests as one types.
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

  // ---- times relative to now, as the server wrote them, kept current ----
  function ago(at) {
    var seconds = Math.round((at - Date.now()) / 1000);
    var span = Math.abs(seconds);
    if (span < 45) { return "just now"; }
    var n, unit;
    if (Math.round(span / 60) < 60) { n = Math.round(span / 60); unit = "minute"; }
    else if (Math.round(span / 3600) < 24) { n = Math.round(span / 3600); unit = "hour"; }
    else if (Math.round(span / 86400) < 30) { n = Math.round(span / 86400); unit = "day"; }
    else if (span < 365 * 86400) { n = Math.floor(span / (30 * 86400)); unit = "month"; }
    else { n = Math.floor(span / (365 * 86400)); unit = "year"; }
    var words = plural(Math.max(n, 1), unit);
    return seconds > 0 ? "in " + words : words + " ago";
  }
  var moments = document.querySelectorAll("time.ago");
  function refresh() {
    for (var i = 0; i < moments.length; i++) {
      var at = Date.parse(moments[i].getAttribute("datetime"));
      if (!isNaN(at)) { moments[i].textContent = ago(at); }
    }
  }
  if (moments.length) { window.setInterval(refresh, 60000); }

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
    var has = function (map, name) { return map && Object.prototype.hasOwnProperty.call(map, name); };
    var refresh = function (state) {
      for (var i = 0; i < fields.length; i++) {
        var field = fields[i];
        var name = field.getAttribute("data-input");
        var needs = (field.getAttribute("data-depends-on") || "").split(" ").filter(Boolean);
        var waiting = needs.filter(function (n) { return !filled(n); });
        if (state && has(state.disabled, name)) { field.toggleAttribute("data-disabled", state.disabled[name]); }
        var fixed = field.hasAttribute("data-disabled");
        var controls = field.querySelectorAll("input, select, textarea");
        for (var j = 0; j < controls.length; j++) { controls[j].disabled = waiting.length > 0 || fixed; }
        var hint = field.querySelector(".waiting");
        if (hint) { hint.hidden = waiting.length === 0; }
        if (state && has(state.visible, name)) { field.hidden = !state.visible[name]; }
      }
    };
    var pending = null;
    var ask = function () {
      if (!stateUrl || !window.fetch) { refresh(null); return; }
      var body = new URLSearchParams(new FormData(form));
      fetch(stateUrl, { method: "POST", body: body, credentials: "same-origin" })
        .then(function (response) { return response.ok && !response.redirected ? response.json() : null; })
        .then(function (state) { refresh(state); })
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

// ---- suggestions while typing in the search box: arrows move, Enter opens, Escape closes ----
(function () {
  "use strict";
  var input = document.getElementById("find");
  if (!input || !window.fetch) { return; }
  var list = document.createElement("ul");
  list.id = "find-suggestions";
  list.className = "suggestions";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", "Suggestions");
  list.hidden = true;
  input.parentNode.appendChild(list);
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("autocomplete", "off");
  var items = [], active = -1, timer = null, asked = "";

  function close() {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }
  function choose(index) {
    var options = list.querySelectorAll("[role=option]");
    for (var i = 0; i < options.length; i++) { options[i].setAttribute("aria-selected", i === index ? "true" : "false"); }
    active = index;
    if (index >= 0 && options[index]) {
      input.setAttribute("aria-activedescendant", options[index].id);
      options[index].scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }
  function show(found) {
    items = found;
    list.textContent = "";
    if (!found.length) {
      var none = document.createElement("li");
      none.className = "empty";
      none.textContent = "No suggestions; press Enter to search";
      list.appendChild(none);
    }
    found.forEach(function (item, i) {
      var li = document.createElement("li");
      li.id = "find-option-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", "false");
      var label = document.createElement("span");
      label.textContent = item.label;
      var detail = document.createElement("span");
      detail.className = "sub";
      detail.textContent = item.detail;
      var kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = item.kind;
      li.appendChild(label);
      li.appendChild(detail);
      li.appendChild(kind);
      li.addEventListener("mousedown", function (event) {
        event.preventDefault();
        window.location.href = item.href;
      });
      list.appendChild(li);
    });
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    active = -1;
  }
  function ask() {
    var q = input.value.trim();
    if (!q) { close(); return; }
    asked = q;
    fetch("/suggest?q=" + encodeURIComponent(q), { credentials: "same-origin" })
      .then(function (response) { return response.ok && !response.redirected ? response.json() : null; })
      .then(function (found) { if (found && q === asked && input.value.trim() === q) { show(found); } })
      .catch(function () { close(); });
  }
  input.addEventListener("input", function () {
    if (timer) { window.clearTimeout(timer); }
    timer = window.setTimeout(ask, 150);
  });
  input.addEventListener("keydown", function (event) {
    var open = !list.hidden && items.length > 0;
    if (event.key === "ArrowDown" && open) {
      event.preventDefault();
      choose((active + 1) % items.length);
    } else if (event.key === "ArrowUp" && open) {
      event.preventDefault();
      choose(active <= 0 ? items.length - 1 : active - 1);
    } else if (event.key === "Enter" && open && active >= 0) {
      event.preventDefault();
      window.location.href = items[active].href;
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault();
      close();
    }
  });
  input.addEventListener("blur", close);
})();
