/* cityops clientside callbacks, served from this server (no inline script, so the CSP stays
   strict). The wall: an optional alarm sound for new critical alerts
   (?sound=1 in the wall's URL; a kiosk browser needs --autoplay-policy=no-user-gesture-required,
   or one click on the page, to let it play). The alert console: what a tap or an action
   answers is scrolled into view. A server gone or data stopped is said on every page by
   stale.js. */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  cityops: {
    /* The console: after a tap on an alert its facts, after an action its confirmation, are
       brought into view (on a phone both were below the screen's edge). */
    showAnswer: function (label, result, selected) {
      const trigger = (window.dash_clientside.callback_context.triggered[0] || {}).prop_id || "";
      let target = null;
      let where = "start";
      if (trigger.startsWith("alerts-result")) {
        target = document.getElementById("alerts-result");
        where = "center";
      } else if (selected !== null && selected !== undefined && selected !== window.cityopsShown) {
        target = document.getElementById("alerts-selected-label");  // a new alert, not a redraw
      }
      window.cityopsShown = selected;
      if (target) {
        window.requestAnimationFrame(() => target.scrollIntoView({ block: where }));
      }
      return Date.now();
    },
    alarmSound: function (ids, search) {
      if (ids === null || ids === undefined) {
        return window.dash_clientside.no_update;  // no data from the server yet
      }
      const wanted = /(^|[?&])sound=1(&|$)/.test(search || "");
      const current = new Set(ids || []);
      const seen = window.cityopsSeenCritical;
      window.cityopsSeenCritical = current;
      if (!wanted || seen === undefined) {
        return window.dash_clientside.no_update;  // first look: remember, do not sound
      }
      const fresh = [...current].filter((id) => !seen.has(id));
      if (fresh.length === 0) {
        return window.dash_clientside.no_update;
      }
      window.cityopsAlarmCount = (window.cityopsAlarmCount || 0) + 1;
      try {
        const Ctx = window.AudioContext || window.webkitAudioContext;
        const ctx = window.cityopsAudio || (window.cityopsAudio = new Ctx());
        ctx.resume();
        for (let i = 0; i < 3; i++) {
          const osc = ctx.createOscillator();
          const gain = ctx.createGain();
          osc.frequency.value = 880;
          gain.gain.value = 0.2;
          osc.connect(gain).connect(ctx.destination);
          osc.start(ctx.currentTime + i * 0.45);
          osc.stop(ctx.currentTime + i * 0.45 + 0.3);
        }
      } catch (e) {
        /* no audio device: the flashing strip still shows it */
      }
      return fresh.length;
    },
  },
});
