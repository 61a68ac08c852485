// The dashboard's only script (no inline scripts: the CSP forbids them).
// Live regions over server-sent events, relative times, confirmations.
"use strict";

(function () {
  const units = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];

  function relative(iso) {
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    const ahead = seconds < 0;
    const size = Math.abs(seconds);
    if (size < 5) return "just now";
    for (const [step, unit] of units) {
      if (size >= step) {
        const amount = Math.floor(size / step) + " " + unit;
        return ahead ? "in " + amount : amount + " ago";
      }
    }
    return "just now";
  }

  function refreshTimes(root) {
    for (const node of root.querySelectorAll("time[datetime]")) {
      node.textContent = relative(node.getAttribute("datetime"));
      if (!node.title) node.title = new Date(node.getAttribute("datetime")).toString();
    }
  }

  function follow(url) {
    const state = document.getElementById("live-state");
    const source = new EventSource(url);
    source.addEventListener("open", function () {
      if (state) state.textContent = "";
      document.body.classList.remove("offline");
    });
    source.addEventListener("error", function () {
      if (state) state.textContent = "Connection lost: reconnecting…";
      document.body.classList.add("offline");
    });
    source.addEventListener("region", function (message) {
      const region = JSON.parse(message.data);
      const target = document.getElementById(region.id);
      if (!target) return;
      // The HTML was rendered and escaped by the server's templates.
      target.innerHTML = region.html;
      refreshTimes(target);
    });
    source.addEventListener("synced", function () {
      document.body.classList.add("synced");
    });
    source.addEventListener("gone", function () {
      source.close();
      const here = location.pathname + location.search;
      location.assign("/login?next=" + encodeURIComponent(here));
    });
    source.addEventListener("broken", function () {
      source.close();
      if (state) state.textContent = "Live updates stopped: reload the page.";
    });
    source.addEventListener("missing", function () {
      source.close();
      location.reload();
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes(document);
    setInterval(function () { refreshTimes(document); }, 15000);
    const url = document.body.dataset.live;
    if (url) follow(url);
  });
})();
