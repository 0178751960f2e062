// ipsfhir console: progressive enhancement only; every page works without it.
// An element with data-live="URL" data-every="SECONDS" is replaced by the
// HTML that URL answers, every so many seconds while the tab is visible;
// one with data-reload="SECONDS" reloads the page (see reloadLater).
// When the session has ended (the answer is not the fragment), the page is
// reloaded, which shows the sign-in form.
(function () {
  "use strict";
  function poll(el) {
    var url = el.getAttribute("data-live");
    var every = Math.max(2, parseInt(el.getAttribute("data-every"), 10) || 10) * 1000;
    var timer = null;
    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(refresh, every);
    }
    function refresh() {
      if (document.hidden) { schedule(); return; }
      fetch(url, { credentials: "same-origin", redirect: "manual", headers: { "Accept": "text/html" } })
        .then(function (res) {
          if (res.type === "opaqueredirect" || res.status === 401 || res.status === 403) {
            window.location.reload();
            return null;
          }
          return res.ok ? res.text() : null;
        })
        .then(function (html) {
          if (html === null || html === undefined) { schedule(); return; }
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.querySelector("[data-live]");
          if (fresh && el.parentNode) {
            el.parentNode.replaceChild(fresh, el);
            el = fresh;
          }
          schedule();
        })
        .catch(schedule);
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { refresh(); }
    });
    schedule();
  }
  // An element with data-reload="SECONDS" (a readiness check that runs)
  // reloads the page, without its query, after so many seconds while the
  // tab is visible; the page drops the element once there is nothing to
  // wait for.
  function reloadLater(el) {
    var every = Math.max(2, parseInt(el.getAttribute("data-reload"), 10) || 5) * 1000;
    setTimeout(function again() {
      if (document.hidden) { setTimeout(again, every); return; }
      if (window.location.search) {
        window.location.replace(window.location.pathname + window.location.hash);
      } else {
        window.location.reload(); // the same URL with a fragment would only scroll
      }
    }, every);
  }
  function start() {
    var live = document.querySelectorAll("[data-live]");
    for (var i = 0; i < live.length; i++) { poll(live[i]); }
    var reload = document.querySelector("[data-reload]");
    if (reload) { reloadLater(reload); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
