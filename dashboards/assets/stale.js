/* cityops: every page says when what it shows is stale (issue 16), within 10 s.

   The browser asks GET /api/heartbeat every two seconds and watches the page's own data calls
   (Dash's /_dash-update-component). A banner over the page, and the page dimmed, when:
   - the server has not answered for 5 s (its last good time is shown): only the browser can
     say that;
   - the database cannot be reached (the heartbeat says so), or the page's own data calls fail;
   - the alert engine found the data stream stopped (an open source loss: the banner says what
     and since when; the page is dimmed when it is the whole stream).
   Everything goes by itself when it is over. Served from this server: the CSP stays strict. */
(function () {
  "use strict";
  const POLL_MS = 2000;
  const TIMEOUT_MS = 2500;
  const LOST_AFTER_MS = 5000;
  const CALLBACKS = "/_dash-update-component";
  const state = { lastOk: Date.now(), lastOkText: "", texts: null, pageFailed: false };

  function lang() {
    try {
      const chosen = JSON.parse(window.localStorage.getItem("lang") || "null");
      if (chosen === "en" || chosen === "zh") return chosen;
    } catch (e) { /* not JSON: use the page's language */ }
    return (document.documentElement.lang || "zh").startsWith("en") ? "en" : "zh";
  }

  function clockText(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  function banner() {
    let el = document.getElementById("stale-banner");
    if (!el) {
      el = document.createElement("div");
      el.id = "stale-banner";
      el.className = "banner banner-error stale-banner";
      el.setAttribute("role", "alert");
      document.body.insertBefore(el, document.body.firstChild);  // above the header: it pushes
    }
    // a kiosk page (the wall) has no room to push: the banner lies over its top instead
    el.classList.toggle("over-kiosk", document.querySelector(".header-row.hidden") !== null);
    return el;
  }

  function show(kind, text, dim) {
    const el = banner();
    el.textContent = text;
    if (el.dataset.kind !== kind) el.dataset.since = String(Date.now());  // when it said so
    el.style.display = "block";
    el.dataset.kind = kind;
    document.body.dataset.stale = kind;
    const page = document.getElementById("page");
    if (page) {
      page.style.opacity = dim ? "0.45" : "";
      page.style.filter = dim ? "grayscale(0.7)" : "";
    }
  }

  function hide() {
    const el = document.getElementById("stale-banner");
    if (el) {
      el.style.display = "none";
      delete el.dataset.kind;
    }
    delete document.body.dataset.stale;
    const page = document.getElementById("page");
    if (page) {
      page.style.opacity = "";
      page.style.filter = "";
    }
  }

  function text(key) {
    const texts = state.texts || {};
    return (texts[lang()] || texts.zh || {})[key] || key;
  }

  function judge(beat) {
    if (!beat.db) return show("db", text("stale.db_down"), true);
    if (state.pageFailed) return show("page", text("stale.page_failed"), true);
    if (beat.stream) return show("stream", beat.stream[lang()] || beat.stream.zh, beat.dim);
    hide();
  }

  async function poll() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const resp = await fetch("/api/heartbeat", { cache: "no-store", signal: abort.signal });
      if (!resp.ok) throw new Error(`heartbeat ${resp.status}`);
      const beat = await resp.json();
      state.lastOk = Date.now();
      state.lastOkText = clockText(new Date());
      state.texts = beat.texts;
      judge(beat);
    } catch (e) {
      if (Date.now() - state.lastOk > LOST_AFTER_MS) {
        const when = state.lastOkText || clockText(new Date(state.lastOk));
        show("server", text("stale.server_lost").replace("{time}", when), true);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /* the page's own data calls: a failure marks the page stale until one succeeds again */
  const original = window.fetch.bind(window);
  window.fetch = function (resource, init) {
    const url = typeof resource === "string" ? resource : (resource && resource.url) || "";
    const call = original(resource, init);
    if (url.indexOf(CALLBACKS) === -1) return call;
    return call.then(
      (resp) => {
        if (resp.status >= 500) state.pageFailed = true;
        else if (resp.ok) state.pageFailed = false;
        return resp;
      },
      (err) => {
        state.pageFailed = true;
        throw err;
      },
    );
  };

  function start() {
    poll();
    window.setInterval(poll, POLL_MS);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
