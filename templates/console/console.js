// Live progress on the dashboard: polls /admin/progress.json and updates the issue list.
// The page works without it; this only saves a reload.
(function () {
  "use strict";
  var list = document.getElementById("issues");
  if (!list || !window.fetch) { return; }
  function update(issue) {
    var item = list.querySelector('li[data-issue="' + issue.key + '"]');
    if (!item) { return; }
    var set = function (field, text) {
      var el = item.querySelector('[data-field="' + field + '"]');
      if (el) { el.textContent = text; }
    };
    set("status", issue.status);
    set("figures", issue.figures);
    set("rate", issue.rate);
    set("eta", issue.eta);
    var say = function (field, prefix, text) {
      var el = item.querySelector('[data-field="' + field + '"]');
      if (el) { el.textContent = text ? prefix + text : ""; el.hidden = !text; }
    };
    say("stuck", "Stuck: ", issue.stuck);
    say("transport", "The relay is ", issue.transport);
    var bar = item.querySelector('[data-field="progress"]');
    if (bar) { bar.max = Math.max(issue.total, 1); bar.value = issue.done; }
    var status = item.querySelector('[data-field="status"]');
    if (status) { status.className = "status s-" + issue.status; }
  }
  function poll() {
    fetch("/admin/progress.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) { if (body) { body.issues.forEach(update); } })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 3000);
})();
