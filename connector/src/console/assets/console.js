// Hanse console: htmx sends this session's CSRF token with every request it makes (forms carry it too), and
// evaluates nothing a page or an answer carries.
htmx.config.allowEval = false;
htmx.config.includeIndicatorStyles = false;
htmx.config.selfRequestsOnly = true;
document.body.addEventListener("htmx:configRequest", function (event) {
  var token = document.querySelector('meta[name="csrf-token"]');
  if (token) { event.detail.headers["X-CSRF-Token"] = token.content; }
});
