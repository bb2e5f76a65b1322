// Portolan's one script: a run page follows its log live (server-sent events). Without it the
// page still works; it just shows the log as it was when loaded.
(function () {
  "use strict";
  var log = document.getElementById("live-log");
  if (!log || !window.EventSource) { return; }
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
})();
